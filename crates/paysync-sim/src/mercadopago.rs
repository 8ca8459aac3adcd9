//! The simulated Mercado Pago API and the MercadoLibre endpoints paysync reads, on one loopback
//! server (the wire contract: `docs/mercadopago-contract.md`; facts:
//! `shared/spec/mercadolibre-api.md`).
//!
//! - `GET /v1/payments/search` and `GET /v1/payments/{id}` ([`search`]), the payment JSON
//!   ([`json`]: amounts written from their exact decimal text, times in `-04:00` with
//!   milliseconds);
//! - `GET /orders/{id}` and `GET /users/me` (MercadoLibre; the paths do not collide);
//! - `POST /oauth/token` with rotating refresh tokens ([`oauth`]), and the access tokens every
//!   other call needs (`Authorization: Bearer`);
//! - the webhooks Mercado Pago and MercadoLibre would send, built for tests ([`webhook`]);
//! - refunds a test makes after a payment was paid ([`refunds`]).
//!
//! Faults mirror Mobbex's (latency, 429 with or without `Retry-After`, 5xx with every body shape,
//! garbage, dropped connections, [`Simulator::fail_next`] with [`SimApi::MercadoPago`]); the token
//! endpoint has its own ([`SimApi::MercadoPagoToken`], `mp_token_latency`, answers lost after the
//! rotation). Like Mobbex's, every draw goes through the seeded RNG and only when its rate is
//! above zero, so the older faults' draws are unchanged when the new rates are left at 0.

// Helpers return `Result<_, Response>` to short-circuit with an HTTP answer, as the handlers do.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::json;

use super::{ErrorBody, Shared, SimApi, Simulator, State, faults};

mod hmac;
mod json;
mod oauth;
mod refunds;
mod search;
#[cfg(test)]
mod tests;
mod webhook;

pub use webhook::{MpWebhook, ml_notification, mp_signature};

/// The seller [`crate::SimOptions::mp_seller_id`] defaults to (and [`SimMpPayment::from_mobbex`]
/// collects for).
pub const DEFAULT_MP_SELLER_ID: u64 = 123_456_789;

/// One fee of a payment (`fee_details[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimMpFee {
    /// `type`: e.g. "mercadopago_fee", "application_fee" (MercadoLibre's commission),
    /// "financing_fee".
    pub kind: String,
    pub amount: Decimal,
    /// `fee_payer`: "collector" (deducted from what the seller receives) or "payer" (paid by the
    /// buyer on top, not deducted).
    pub payer: String,
}

/// A Mercado Pago payment as the simulator stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMpPayment {
    pub id: u64,
    /// approved, pending, in_process, authorized, in_mediation, rejected, cancelled, refunded,
    /// charged_back.
    pub status: String,
    pub status_detail: String,
    pub transaction_amount: Decimal,
    pub transaction_amount_refunded: Decimal,
    pub currency_id: String,
    pub external_reference: Option<String>,
    /// The MercadoLibre order it pays (`order: {"id", "type": "mercadolibre"}`); `None`: no
    /// `order` key at all.
    pub ml_order_id: Option<u64>,
    /// `false`: a test-mode payment.
    pub live_mode: bool,
    /// The seller's user id; only the token's seller sees the payment (search, get: 403).
    pub collector_id: u64,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// `date_approved`, served only while the status is approved, refunded or charged_back.
    pub approved: Option<Timestamp>,
    pub fees: Vec<SimMpFee>,
    /// What Mercado Pago kept beyond `fee_details` (a MercadoLibre sale's shipping is listed in
    /// `charges_details`, not there): lowers `net_received_amount` only.
    pub unlisted_charges: Decimal,
    pub description: String,
    /// Its refunds, oldest first (`refunds[]`; [`Simulator::refund_mp_payment`] adds them and
    /// keeps `transaction_amount_refunded` their sum). Empty with an amount refunded set by
    /// hand: one refund of that amount is served.
    pub refunds: Vec<SimMpRefund>,
}

/// One refund of a payment (`refunds[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimMpRefund {
    pub id: u64,
    pub amount: Decimal,
    pub created: Timestamp,
}

impl SimMpPayment {
    /// An approved (accredited) live ARS payment of `amount` by [`DEFAULT_MP_SELLER_ID`], created,
    /// updated and approved at `created`, no fees, no reference.
    pub fn approved(id: u64, amount: Decimal, created: Timestamp) -> SimMpPayment {
        SimMpPayment {
            id,
            status: "approved".into(),
            status_detail: "accredited".into(),
            transaction_amount: amount,
            transaction_amount_refunded: Decimal::ZERO,
            currency_id: "ARS".into(),
            external_reference: None,
            ml_order_id: None,
            live_mode: true,
            collector_id: DEFAULT_MP_SELLER_ID,
            created,
            updated: created,
            approved: Some(created),
            fees: Vec::new(),
            unlisted_charges: Decimal::ZERO,
            description: "Compra".into(),
            refunds: Vec::new(),
        }
    }
}

/// A MercadoLibre order (`GET /orders/{id}`); its `payments[]` are built from the stored payments
/// with `payment_ids` (unknown ids are left out).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimMlOrder {
    pub id: u64,
    /// Another seller than the token's: 403.
    pub seller_id: u64,
    /// confirmed, payment_required, payment_in_process, partially_paid, paid, cancelled, invalid.
    pub status: String,
    pub payment_ids: Vec<u64>,
    pub total_amount: Decimal,
    pub currency_id: String,
    pub buyer_id: u64,
    pub buyer_nickname: String,
    pub tags: Vec<String>,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// A payment as stored: well-formed, or a raw document served verbatim (malformed input).
#[derive(Debug, Clone)]
// Typed payments are the common case: boxing them would cost every one an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum StoredMp {
    Typed(SimMpPayment),
    Raw {
        doc: serde_json::Value,
        created: Timestamp,
        updated: Timestamp,
    },
}

impl StoredMp {
    /// The id a raw document's `id` holds (a number or a string of digits), 0 if none.
    fn id(&self) -> u64 {
        match self {
            StoredMp::Typed(p) => p.id,
            StoredMp::Raw { doc, .. } => match doc.get("id") {
                Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
                Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                _ => 0,
            },
        }
    }
}

/// The Mercado Pago side of [`State`].
#[derive(Debug, Default)]
pub(crate) struct MpState {
    pub payments: Vec<StoredMp>,
    pub orders: BTreeMap<u64, SimMlOrder>,
    pub tokens: oauth::Tokens,
    /// 401s answered so far: every other one uses the second real body shape.
    pub unauthorized: u64,
    /// Webhooks built so far (their `x-request-id` and `id`).
    pub webhooks: u64,
}

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/payments/search", get(search::search))
        .route("/v1/payments/{id}", get(search::one))
        .route("/orders/{id}", get(search::ml_order))
        .route("/users/me", get(search::users_me))
        .route("/oauth/token", post(oauth::token))
        .with_state(state)
}

/// A JSON answer from its text.
pub(crate) fn body(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Mercado Pago's error body: `{"message", "error", "status", "cause": [...]}`.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    cause: serde_json::Value,
) -> Response {
    body(
        status,
        json!({"message": message, "error": code, "status": status.as_u16(), "cause": cause})
            .to_string(),
    )
}

/// A Mercado Pago error answer for a drawn or queued fault: for `Json` its own
/// `internal_error`-style body (with the status given), else a proxy's.
pub(crate) fn mp_error(code: u16, shape: ErrorBody) -> Response {
    if shape != ErrorBody::Json {
        return faults::proxy_error(code, shape);
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (name, message) = match code {
        502 => ("bad_gateway", "Bad Gateway"),
        503 => ("service_unavailable", "Service Unavailable"),
        504 => ("gateway_timeout", "Gateway Timeout"),
        _ => ("internal_error", "Internal server error"),
    };
    error(status, name, message, json!([]))
}

/// 429 `local_rate_limited`, with `Retry-After: secs` or without it.
pub(crate) fn too_many_requests(retry_after: Option<u64>) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "local_rate_limited",
        "Too many requests",
        json!([]),
    );
    if let Some(secs) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    r
}

/// The beginning of a typical search answer, for connections cut mid-answer.
pub(crate) const DROP_PREFIX: &str = r#"{"paging":{"total":"#;

/// 401 for a wrong, expired, revoked or missing token, alternating the two real body shapes.
fn unauthorized(s: &mut State) -> Response {
    s.mp.unauthorized += 1;
    if s.mp.unauthorized.is_multiple_of(2) {
        return body(
            StatusCode::UNAUTHORIZED,
            json!({"code": "unauthorized", "message": "invalid access token"}).to_string(),
        );
    }
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "invalid access token",
        json!([]),
    )
}

/// Auth, latency and faults shared by every endpoint but the token one. `Err` is the response
/// to send. Order as Mobbex's gate: latency, auth, a queued answer, 429, garbage, 5xx, drop.
pub(crate) async fn gate(
    state: &Shared,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<(), Response> {
    let latency = {
        let mut s = state.lock().expect("poisoned");
        s.count(endpoint);
        s.opts.faults.mp_latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim();
    let mut s = state.lock().expect("poisoned");
    if !oauth::access_token_valid(&s, token) {
        return Err(unauthorized(&mut s));
    }
    if let Some(r) = faults::next_answer(&mut s, SimApi::MercadoPago) {
        return Err(r);
    }
    let f = s.opts.faults.clone();
    if s.hit(f.mp_429_rate) {
        if s.hit(f.mp_429_no_retry_after_rate) {
            s.note_fault("mp 429 no retry-after");
            return Err(too_many_requests(None));
        }
        s.note_fault("mp 429");
        return Err(too_many_requests(Some(1)));
    }
    if s.hit(f.mp_garbage_rate) {
        s.note_fault("mp 200 garbage");
        return Err((
            StatusCode::OK,
            "<html><body>Mercado Pago says hello</body></html>",
        )
            .into_response());
    }
    if s.hit(f.mp_5xx_rate) {
        let status = s.pick(&faults::SERVER_ERRORS);
        let shape = s.pick(&ErrorBody::ALL);
        s.note_fault(&format!("mp {status} {}", shape.label()));
        return Err(mp_error(status, shape));
    }
    if s.hit(f.mp_drop_connection_rate) {
        s.note_fault("mp drop mid-answer");
        return Err(faults::drop_mid_answer(DROP_PREFIX));
    }
    Ok(())
}

impl Simulator {
    // ---- Mercado Pago side

    pub fn add_mp_payment(&self, p: SimMpPayment) {
        self.with(|s| s.mp.payments.push(StoredMp::Typed(p)));
    }

    /// Change a payment in place (set `updated` yourself to make it show in updated-windows).
    pub fn update_mp_payment(&self, id: u64, f: impl FnOnce(&mut SimMpPayment)) {
        self.with(|s| {
            if let Some(StoredMp::Typed(p)) =
                s.mp.payments
                    .iter_mut()
                    .find(|p| matches!(p, StoredMp::Typed(t) if t.id == id))
            {
                f(p);
            }
        });
    }

    /// A document served verbatim by search and by get (malformed input for tests); `created`
    /// and `updated` place it in `date_created` / `date_last_updated` ranges and sorts, its own
    /// `id` (number or string of digits) finds it by id.
    pub fn add_raw_mp_payment(
        &self,
        doc: serde_json::Value,
        created: Timestamp,
        updated: Timestamp,
    ) {
        self.with(|s| {
            s.mp.payments.push(StoredMp::Raw {
                doc,
                created,
                updated,
            })
        });
    }

    /// The well-formed payments (raw documents left out).
    pub fn mp_payments(&self) -> Vec<SimMpPayment> {
        self.with(|s| {
            s.mp.payments
                .iter()
                .filter_map(|p| match p {
                    StoredMp::Typed(t) => Some(t.clone()),
                    StoredMp::Raw { .. } => None,
                })
                .collect()
        })
    }

    /// Add (or replace, by id) a MercadoLibre order.
    pub fn add_ml_order(&self, o: SimMlOrder) {
        self.with(|s| {
            s.mp.orders.insert(o.id, o);
        });
    }

    pub fn ml_orders(&self) -> Vec<SimMlOrder> {
        self.with(|s| s.mp.orders.values().cloned().collect())
    }
}

/// The payments with these ids, in that order (unknown ids left out): an order's `payments[]`.
pub(crate) fn payments_by_id(s: &State, ids: &[u64]) -> Vec<SimMpPayment> {
    let by_id: HashMap<u64, &SimMpPayment> =
        s.mp.payments
            .iter()
            .filter_map(|p| match p {
                StoredMp::Typed(t) => Some((t.id, t)),
                StoredMp::Raw { .. } => None,
            })
            .collect();
    ids.iter()
        .filter_map(|id| by_id.get(id).map(|p| (*p).clone()))
        .collect()
}
