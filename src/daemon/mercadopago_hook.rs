//! `POST /webhooks/mercadopago/{account}`: which trigger a Mercado Pago webhook or a MercadoLibre
//! notification is, after the checks its kind allows.
//!
//! - Mercado Pago webhooks are signed: `x-signature` must verify with the account's
//!   `webhook_secret` over `data.id` (from the query), `x-request-id` and `ts`, and `ts` must be
//!   within [`SIGNATURE_TOLERANCE`] of now; otherwise 401. Without a `webhook_secret` they are
//!   refused (401): an unverifiable webhook is never taken.
//! - MercadoLibre notifications are not signed (`shared/spec/mercadolibre-api.md` §2.2): they are
//!   taken only with the account's `webhook_token` in the URL (`?token=`, checked before the
//!   body is read, `http.rs`) — an `application_id` is no secret (it is in every authorization
//!   URL) — and their `application_id` must be the account's OAuth `client_id` when it has one.
//! - Both carry the seller's `user_id`: once the account's seller is known (read at the daemon's
//!   start), a notification for another seller is refused (401).
//!
//! Either way a notification only names what to re-read: the payment (or the order's payments) is
//! always read from the API with the account's own token, so a forged id books nothing that is
//! not really the seller's. Must not: call an API or the ledger (the handler queues; it must answer
//! within MercadoLibre's 500 ms whatever the backlog).

use std::time::Duration;

use axum::http::HeaderMap;
use jiff::Timestamp;
use secrecy::ExposeSecret;

use crate::config::{AccountSettings, MercadoPagoToken, SourceCredentials};
use crate::source::Trigger;
use crate::source::mercadopago::ORDER_TRIGGER;
use crate::source::mercadopago::webhook::{Notification, parse_notification, verify_signature};

/// How far a signature's `ts` may be from now. Mercado Pago retries a webhook for days; whether a
/// retry is signed anew is not documented (research notes: unsettled), and a refused retry is no
/// loss — polling books the payment anyway — but a replay of a captured webhook only makes
/// paysync re-read a payment. An hour keeps replays short without refusing the first retries.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(3600);

/// Why a notification is not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: not proven to come from the account's application.
    Unauthorized(String),
    /// 400: not a notification paysync can read.
    BadRequest(String),
}

/// What a notification is checked against besides the configuration: the seller's user id,
/// once the source has read it (`PaymentSource::merchant_id`).
pub struct Expect<'a> {
    pub account: &'a AccountSettings,
    pub seller: Option<String>,
    /// The URL carried the account's `webhook_token` (one was configured and matched).
    pub url_token: bool,
}

/// The trigger of one notification of `expect.account`.
pub fn trigger(
    expect: &Expect<'_>,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<Trigger, Refusal> {
    let acc = expect.account;
    let SourceCredentials::MercadoPago(mp) = &acc.credentials else {
        return Err(Refusal::BadRequest("not a Mercado Pago account".into()));
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let notification =
        parse_notification(&pairs, body).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // A notification naming another seller is not this account's (its `user_id` is the seller,
    // the token's user); one naming none, or before the seller is known, is taken.
    let seller_ok = |user_id: Option<u64>| match (&expect.seller, user_id) {
        (Some(seller), Some(user)) => *seller == user.to_string(),
        _ => true,
    };
    let unsigned_refused = || {
        Refusal::Unauthorized(
            "MercadoLibre notifications are not signed: they are taken only with the account's webhook_token in the notification URL (?token=...)".into(),
        )
    };
    let application_ok = |application_id: Option<u64>| match &mp.token {
        MercadoPagoToken::OAuth(keys) => {
            application_id.is_some_and(|a| a.to_string() == keys.client_id)
        }
        // A seller's own token names no application to compare with.
        MercadoPagoToken::Static(_) => true,
    };
    match notification {
        Notification::Payment {
            id,
            action,
            user_id,
            ..
        } => {
            if !seller_ok(user_id) {
                return Err(Refusal::Unauthorized(
                    "a webhook for another seller (user_id)".into(),
                ));
            }
            let Some(secret) = &mp.webhook_secret else {
                return Err(Refusal::Unauthorized(
                    "no webhook_secret configured for this account: Mercado Pago webhooks cannot be verified".into(),
                ));
            };
            let data_id = pairs
                .iter()
                .find(|(k, _)| k == "data.id")
                .map(|(_, v)| v.as_str())
                .unwrap_or(&id);
            verify_signature(
                secret.expose_secret().as_bytes(),
                header("x-signature"),
                header("x-request-id"),
                Some(data_id),
                now,
                SIGNATURE_TOLERANCE,
            )
            .map_err(|e| Refusal::Unauthorized(format!("x-signature: {e}")))?;
            Ok(Trigger::Operation {
                uid: id,
                kind: action.unwrap_or_else(|| "payment".into()),
                reference: None,
            })
        }
        Notification::MlPayment {
            id,
            application_id,
            user_id,
            ..
        } => {
            if !expect.url_token {
                return Err(unsigned_refused());
            }
            if !seller_ok(user_id) {
                return Err(Refusal::Unauthorized(
                    "a notification for another seller (user_id)".into(),
                ));
            }
            if !application_ok(application_id) {
                return Err(Refusal::Unauthorized(
                    "a notification of another application".into(),
                ));
            }
            Ok(Trigger::Operation {
                uid: id,
                kind: "payments".into(),
                reference: None,
            })
        }
        Notification::MlOrder {
            order_id,
            application_id,
            user_id,
            ..
        } => {
            if !expect.url_token {
                return Err(unsigned_refused());
            }
            if !seller_ok(user_id) {
                return Err(Refusal::Unauthorized(
                    "a notification for another seller (user_id)".into(),
                ));
            }
            if !application_ok(application_id) {
                return Err(Refusal::Unauthorized(
                    "a notification of another application".into(),
                ));
            }
            Ok(Trigger::Operation {
                uid: format!("{ORDER_TRIGGER}{order_id}"),
                kind: "orders_v2".into(),
                reference: None,
            })
        }
        // Recorded in the ledger: only from a caller that proved who it is.
        Notification::Ignored { .. } if !expect.url_token => Err(unsigned_refused()),
        Notification::Ignored { reason } => Ok(Trigger::Ignored {
            uid: pairs
                .iter()
                .find(|(k, _)| k == "id" || k == "data.id")
                .map(|(_, v)| v.chars().take(64).collect())
                .unwrap_or_else(|| "-".into()),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests;
