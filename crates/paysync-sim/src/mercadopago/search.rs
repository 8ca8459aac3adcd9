//! The read endpoints: `GET /v1/payments/search`, `GET /v1/payments/{id}`, and MercadoLibre's
//! `GET /orders/{id}` and `GET /users/me`.
//!
//! Search follows the contract: `range` picks the date both bounds apply to (default
//! `date_created`), bounds are inclusive and either ISO 8601 with milliseconds and an offset
//! (`Z`, `-03:00`, `-0300`; a `+` decoded as a space by a client that did not encode it is read
//! back as `+`) or relative (`NOW`, `NOW-<n>HOURS|DAYS|MONTHS`). Results are ordered by `sort`
//! (default `date_created`) in `criteria` order (default `desc`), then by id ascending; a payment
//! without the sorted date (not approved) sorts before every dated one. `paging.total` counts
//! every match. Unlike the real API, a missing bound is no bound (not `NOW-3MONTHS` / `NOW`), so
//! tests need no dates, and there is no 12-month horizon.
//!
//! Only the token's seller's payments are seen: search leaves the others out, get answers 403
//! (raw documents are everyone's).

use std::collections::HashMap;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan as _};
use serde_json::{Value, json};

use super::super::Shared;
use super::{StoredMp, body, error, gate, json as doc, payments_by_id};

/// The largest `limit`. The deepest row `offset + limit` may reach is `SimOptions::mp_max_rows`
/// (10,000 by default: the real ceiling is not documented, research notes).
const MAX_LIMIT: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Created,
    Updated,
    Approved,
    MoneyRelease,
    Id,
}

impl Field {
    fn parse(v: &str) -> Option<Field> {
        Some(match v {
            "date_created" => Field::Created,
            "date_last_updated" => Field::Updated,
            "date_approved" => Field::Approved,
            "money_release_date" => Field::MoneyRelease,
            "id" => Field::Id,
            _ => return None,
        })
    }
}

/// The date `field` of a stored payment (`None`: it has none; `Id` has no date).
fn date(p: &StoredMp, field: Field) -> Option<Timestamp> {
    match p {
        StoredMp::Typed(t) => match field {
            Field::Created => Some(t.created),
            Field::Updated => Some(t.updated),
            Field::Approved => doc::served_approved(t),
            Field::MoneyRelease => doc::money_release(t),
            Field::Id => None,
        },
        StoredMp::Raw {
            doc,
            created,
            updated,
        } => {
            let from_doc = |key: &str| {
                doc.get(key)
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<Timestamp>().ok())
            };
            match field {
                Field::Created => Some(*created),
                Field::Updated => Some(*updated),
                Field::Approved => from_doc("date_approved"),
                Field::MoneyRelease => from_doc("money_release_date"),
                Field::Id => None,
            }
        }
    }
}

fn bad_request(code: u32, message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        message,
        json!([{"code": code, "description": message, "data": null}]),
    )
}

fn rows_exceeded() -> Response {
    bad_request(1000, "Number of rows exceeded the limits")
}

fn bad_date() -> Response {
    bad_request(1001, "Date format must be yyyy-MM-dd'T'HH:mm:ss.SSSZ")
}

/// A bound: `NOW`, `NOW-<n><unit>`, or `yyyy-MM-ddTHH:mm:ss.SSS` + `Z` / `±HH:MM` / `±HHMM`.
pub(crate) fn parse_date(v: &str, now: Timestamp) -> Option<Timestamp> {
    let v = v.trim();
    if let Some(rel) = v.strip_prefix("NOW") {
        if rel.is_empty() {
            return Some(now);
        }
        let rel = rel.strip_prefix('-')?;
        let digits = rel.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rel[..digits].parse().ok()?;
        let utc = now.to_zoned(TimeZone::UTC);
        let back = match &rel[digits..] {
            "HOUR" | "HOURS" => utc.checked_sub(n.hours()),
            "DAY" | "DAYS" => utc.checked_sub(n.days()),
            "MONTH" | "MONTHS" => utc.checked_sub(n.months()),
            _ => return None,
        };
        return back.ok().map(|z| z.timestamp());
    }
    // A `+` sent unencoded arrives as a space.
    let v = v.replace(' ', "+");
    let (civil, offset) = (v.get(..23)?, v.get(23..)?);
    let b = civil.as_bytes();
    let shape_ok = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b'T',
        13 | 16 => *c == b':',
        19 => *c == b'.',
        _ => c.is_ascii_digit(),
    });
    if !shape_ok {
        return None;
    }
    let dt: DateTime = civil.parse().ok()?;
    let offset_secs = match offset {
        "Z" => 0,
        _ => {
            let sign = match offset.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = offset[1..].replace(':', "");
            if hm.len() != 4 || !hm.bytes().all(|c| c.is_ascii_digit()) || offset.len() > 6 {
                return None;
            }
            let (h, m): (i64, i64) = (hm[..2].parse().ok()?, hm[2..].parse().ok()?);
            if h > 18 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let local = dt.to_zoned(TimeZone::UTC).ok()?.timestamp();
    local
        .checked_sub(SignedDuration::from_secs(offset_secs))
        .ok()
}

/// A search's parameters, checked.
struct SearchRequest {
    sort: Field,
    descending: bool,
    range: Field,
    begin: Option<Timestamp>,
    end: Option<Timestamp>,
    offset: u64,
    limit: u64,
    external_reference: Option<String>,
    status: Option<String>,
}

impl SearchRequest {
    fn parse(
        q: &HashMap<String, String>,
        now: Timestamp,
        max_rows: u64,
    ) -> Result<SearchRequest, Response> {
        let sort = match q.get("sort") {
            None => Field::Created,
            Some(v) => Field::parse(v.trim()).ok_or_else(|| bad_request(1003, "Invalid sort"))?,
        };
        let descending = match q.get("criteria").map(|c| c.trim().to_ascii_lowercase()) {
            None => true,
            Some(c) if c == "desc" => true,
            Some(c) if c == "asc" => false,
            Some(_) => return Err(bad_request(1004, "Invalid criteria")),
        };
        let range = match q.get("range") {
            None => Field::Created,
            Some(v) => match Field::parse(v.trim()) {
                Some(Field::Id) | None => {
                    // Not one of the contract's errors: the simulator's own wording.
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "Invalid range",
                        json!([]),
                    ));
                }
                Some(f) => f,
            },
        };
        let bound = |key: &str| -> Result<Option<Timestamp>, Response> {
            match q.get(key) {
                None => Ok(None),
                Some(v) => parse_date(v, now).map(Some).ok_or_else(bad_date),
            }
        };
        let (begin, end) = (bound("begin_date")?, bound("end_date")?);
        let number = |key: &str, default: u64| -> Result<u64, Response> {
            match q.get(key) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        &format!("{key} must be a number"),
                        json!([]),
                    )
                }),
            }
        };
        let (offset, limit) = (number("offset", 0)?, number("limit", 30)?);
        if limit > MAX_LIMIT || offset.saturating_add(limit) > max_rows {
            return Err(rows_exceeded());
        }
        Ok(SearchRequest {
            sort,
            descending,
            range,
            begin,
            end,
            offset,
            limit,
            external_reference: q.get("external_reference").cloned(),
            status: q.get("status").cloned(),
        })
    }

    fn matches(&self, p: &StoredMp, seller: u64) -> bool {
        if self.begin.is_some() || self.end.is_some() {
            let Some(t) = date(p, self.range) else {
                return false;
            };
            if self.begin.is_some_and(|b| t < b) || self.end.is_some_and(|e| t > e) {
                return false;
            }
        }
        match p {
            StoredMp::Typed(t) => {
                t.collector_id == seller
                    && self
                        .external_reference
                        .as_ref()
                        .is_none_or(|r| t.external_reference.as_ref() == Some(r))
                    && self.status.as_ref().is_none_or(|s| *s == t.status)
            }
            StoredMp::Raw { .. } => true,
        }
    }
}

/// `GET /v1/payments/search`.
pub(crate) async fn search(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&state, &headers, "GET /v1/payments/search").await {
        return r;
    }
    let max_rows = state.lock().expect("sim state poisoned").opts.mp_max_rows;
    let req = match SearchRequest::parse(&q, Timestamp::now(), max_rows) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let page = {
        let mut s = state.lock().expect("poisoned");
        s.stats.mp_search_calls += 1;
        let seller = s.opts.mp_seller_id;
        let mut found: Vec<&StoredMp> =
            s.mp.payments
                .iter()
                .filter(|p| req.matches(p, seller))
                .collect();
        found.sort_by(|a, b| {
            let by_field = if req.sort == Field::Id {
                a.id().cmp(&b.id())
            } else {
                date(a, req.sort).cmp(&date(b, req.sort))
            };
            let by_field = if req.descending {
                by_field.reverse()
            } else {
                by_field
            };
            by_field.then_with(|| a.id().cmp(&b.id()))
        });
        let total = found.len();
        let results: Vec<Value> = found
            .into_iter()
            .skip(usize::try_from(req.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(req.limit).unwrap_or(usize::MAX))
            .map(|p| match p {
                StoredMp::Typed(t) => doc::payment(t),
                StoredMp::Raw { doc, .. } => doc.clone(),
            })
            .collect();
        json!({
            "paging": {"total": total, "limit": req.limit, "offset": req.offset},
            "results": results,
        })
    };
    body(StatusCode::OK, doc::render(&page))
}

fn payment_not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "Payment not found",
        json!([{"code": 2000, "description": "Payment not found", "data": null}]),
    )
}

fn forbidden(what: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        &format!("The caller is not authorized to access this {what}"),
        json!([]),
    )
}

/// `GET /v1/payments/{id}`.
pub(crate) async fn one(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&state, &headers, "GET /v1/payments/{id}").await {
        return r;
    }
    let Ok(id) = id.trim().parse::<u64>() else {
        return payment_not_found();
    };
    let (found, seller) = {
        let mut s = state.lock().expect("poisoned");
        s.stats.mp_get_calls += 1;
        let found = s.mp.payments.iter().find(|p| p.id() == id).cloned();
        (found, s.opts.mp_seller_id)
    };
    match found {
        None => payment_not_found(),
        Some(StoredMp::Typed(p)) if p.collector_id != seller => forbidden("payment"),
        Some(StoredMp::Typed(p)) => body(StatusCode::OK, doc::render(&doc::payment(&p))),
        Some(StoredMp::Raw { doc, .. }) => body(StatusCode::OK, doc.to_string()),
    }
}

/// MercadoLibre's `GET /orders/{id}`.
pub(crate) async fn ml_order(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&state, &headers, "GET /orders/{id}").await {
        return r;
    }
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            "Order not found",
            json!([]),
        )
    };
    let Ok(id) = id.trim().parse::<u64>() else {
        return not_found();
    };
    let mut s = state.lock().expect("poisoned");
    s.stats.ml_order_calls += 1;
    let Some(order) = s.mp.orders.get(&id).cloned() else {
        return not_found();
    };
    if order.seller_id != s.opts.mp_seller_id {
        return forbidden("order");
    }
    let payments = payments_by_id(&s, &order.payment_ids);
    body(
        StatusCode::OK,
        doc::render(&doc::ml_order(&order, &payments)),
    )
}

/// `GET /users/me`: the token's user, the seller.
pub(crate) async fn users_me(AxState(state): AxState<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&state, &headers, "GET /users/me").await {
        return r;
    }
    let seller = state.lock().expect("poisoned").opts.mp_seller_id;
    body(
        StatusCode::OK,
        json!({"id": seller, "nickname": "SELLER", "site_id": "MLA"}).to_string(),
    )
}
