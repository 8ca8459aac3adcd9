//! The daemon's HTTP surface: `POST /webhooks/{source}/{account}?token=...` (Mobbex accounts:
//! `/webhooks/mobbex/{account}`), `GET /healthz`, `GET /metrics`.
//!
//! The webhook handler does no booking: it checks the URL token (constant time), reads the
//! operation id from the body, writes a trigger to the durable inbox and answers 200 at once.
//! The account and token are checked **before** the body is read ([`Authorized`]), so a client
//! without the token cannot hold a request open by trickling a body; a token holder's body must
//! arrive within `[daemon] body_timeout`. Connection-level limits are in `listener.rs`.
//! Request URIs are never logged (the token is in the query string).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::DaemonCtx;
use super::listener::LogThrottle;
use super::mercadopago_hook::{self, Refusal};
use crate::source::{SourceKind, Trigger};

/// How long a webhook or `/healthz` waits for the ledger before answering 503: a partitioned
/// PostgreSQL would otherwise hold the request until TCP gives up, many minutes later, and
/// Mobbex (or the load balancer) would see a hang instead of "retry later". Well above a healthy
/// ledger's answer (milliseconds) and under common proxy timeouts (30–60 s).
const LEDGER_ANSWER: Duration = Duration::from_secs(5);

/// Refusals are logged once per 10 s with a count: anyone can send them.
static UNKNOWN_ACCOUNT_LOG: LogThrottle = LogThrottle::new();
static BAD_TOKEN_LOG: LogThrottle = LogThrottle::new();

/// Largest webhook body accepted (Mobbex bodies are a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(ctx: Arc<DaemonCtx>) -> Router {
    Router::new()
        // `/webhooks/mobbex/{account}` (the URL Mobbex accounts were given) is this route too.
        .route("/webhooks/{source}/{account}", post(webhook))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A webhook's configured account, whose `?token=` matched. An extractor that runs before the
/// body is read: an unknown account gets 404 and a wrong or missing token 401 with the body
/// unread (hyper then closes the connection instead of reading it).
struct Authorized {
    account: String,
    source: crate::source::SourceKind,
    /// The URL carried the account's configured `webhook_token`.
    url_token: bool,
}

impl FromRequestParts<Arc<DaemonCtx>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<DaemonCtx>) -> Result<Self, Response> {
        let Path((source, given)) = Path::<(String, String)>::from_request_parts(parts, ctx)
            .await
            .map_err(IntoResponse::into_response)?;
        // The metric label comes from the configuration, never from the URL. An account of
        // another source is as unknown as one that does not exist.
        let Some((account, acc)) = ctx
            .accounts
            .get_key_value(&given)
            .filter(|(_, acc)| acc.settings.source.as_str() == source)
        else {
            metrics::counter!(crate::metrics::WEBHOOKS, "account" => crate::metrics::UNKNOWN_ACCOUNT)
                .increment(1);
            if let Some(suppressed) = UNKNOWN_ACCOUNT_LOG.allow() {
                let shown: String = given.chars().take(64).collect();
                warn!(account = %shown, name_bytes = given.len(), suppressed, "webhook for an unknown account refused");
            }
            return Err(json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "unknown account"}),
            ));
        };
        metrics::counter!(crate::metrics::WEBHOOKS, "account" => account.clone()).increment(1);
        let Query(q) =
            Query::<TokenQuery>::try_from_uri(&parts.uri).map_err(IntoResponse::into_response)?;
        let url_token = match (&acc.settings.webhook_token, &q.token) {
            (Some(expected), Some(given)) => {
                bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes()))
            }
            _ => false,
        };
        // Mercado Pago signs its webhooks (checked with the body, `mercadopago_hook.rs`): without
        // a configured token those may come in; what is unsigned is refused there.
        let authorized = url_token
            || (acc.settings.webhook_token.is_none()
                && acc.settings.source == SourceKind::MercadoPago);
        if !authorized {
            if let Some(suppressed) = BAD_TOKEN_LOG.allow() {
                warn!(account = %account, token_given = q.token.is_some(), suppressed, "webhook with a wrong or missing token refused");
            }
            return Err(json_response(
                StatusCode::UNAUTHORIZED,
                json!({"error": "wrong or missing token"}),
            ));
        }
        Ok(Authorized {
            account: account.clone(),
            source: acc.settings.source,
            url_token,
        })
    }
}

/// The whole body, at most [`BODY_LIMIT`] bytes, within `timeout` of the head's arrival.
async fn read_body(headers: &HeaderMap, body: Body, timeout: Duration) -> Result<Bytes, Response> {
    let too_large = || {
        json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("body larger than {BODY_LIMIT} bytes")}),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("could not read the body: {e}")}),
                )
            })?;
            if buf.len() + chunk.len() > BODY_LIMIT {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            axum::Json(json!({"error": "the body did not arrive in time"})),
        )
            .into_response()),
    }
}

async fn webhook(
    State(ctx): State<Arc<DaemonCtx>>,
    Authorized {
        account,
        source,
        url_token,
    }: Authorized,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = ctx.clock.now();
    let body = match read_body(&headers, body, ctx.settings.daemon.body_timeout).await {
        Ok(b) => b,
        Err(refused) => {
            warn!(account = %account, status = refused.status().as_u16(), "webhook body not read");
            return refused;
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = match source {
        SourceKind::Mobbex => source
            .parse_webhook(content_type, &body)
            .map_err(|e| Refusal::BadRequest(e.to_string())),
        SourceKind::MercadoPago => match ctx.accounts.get(&account) {
            Some(acc) => mercadopago_hook::trigger(
                &mercadopago_hook::Expect {
                    account: &acc.settings,
                    seller: acc.source.merchant_id(),
                    url_token,
                },
                uri.query(),
                &headers,
                &body,
                received,
            ),
            None => Err(Refusal::BadRequest("no such account".into())),
        },
    };
    let trigger = match parsed {
        Ok(t) => t,
        Err(Refusal::BadRequest(e)) => {
            warn!(account = %account, bytes = body.len(), error = %e, "webhook body refused");
            return json_response(StatusCode::BAD_REQUEST, json!({"error": e}));
        }
        Err(Refusal::Unauthorized(e)) => {
            if let Some(suppressed) = BAD_TOKEN_LOG.allow() {
                warn!(account = %account, error = %e, suppressed, "webhook refused: not proven to come from the account's gateway");
            }
            return json_response(StatusCode::UNAUTHORIZED, json!({"error": e}));
        }
    };
    match trigger {
        Trigger::Ignored { uid, reason } => {
            info!(account = %account, uid = %uid, reason = %reason, "webhook received and ignored");
            if let Err(e) = ctx
                .ledger
                .inbox_ignore(&account, &uid, received, &reason)
                .await
            {
                warn!(account = %account, uid = %uid, error = %e, "could not record an ignored webhook");
            }
            json_response(StatusCode::OK, json!({"ok": true, "ignored": reason}))
        }
        Trigger::Operation {
            uid,
            kind,
            reference,
        } => {
            let queue = async {
                let depth = ctx.ledger.inbox_depth().await?;
                let depth = depth.get(&account).copied().unwrap_or(0);
                if depth >= ctx.settings.daemon.inbox_limit {
                    return Ok(Err(depth));
                }
                let queued = ctx
                    .ledger
                    .inbox_push(&account, &uid, received, reference.as_deref())
                    .await?;
                Ok(Ok(queued))
            };
            match crate::store::within(LEDGER_ANSWER, queue).await {
                // Past the limit, refuse with 429: Mobbex retries, polling covers, the inbox
                // stays bounded.
                Ok(Err(depth)) => {
                    warn!(account = %account, uid = %uid, depth, "inbox full; webhook refused with 429");
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, "60")],
                        axum::Json(json!({"error": "inbox full, retry later"})),
                    )
                        .into_response()
                }
                Ok(Ok(queued)) => {
                    info!(account = %account, uid = %uid, kind = %kind, queued, "webhook received");
                    ctx.inbox_wake.notify_one();
                    json_response(StatusCode::OK, json!({"ok": true, "queued": queued}))
                }
                Err(e) => {
                    // Not 200: Mobbex will send it again, and polling covers it anyway.
                    warn!(account = %account, uid = %uid, error = %e, "could not queue a webhook");
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": format!("could not store the trigger: {e}")}),
                    )
                }
            }
        }
    }
}

/// 200 when the store answers, every account polled successfully within 3 schedule periods
/// (counted from the daemon's start for a fresh daemon) and none is stopped (its OAuth
/// authorization revoked); 503 with the reasons otherwise.
async fn healthz(State(ctx): State<Arc<DaemonCtx>>) -> Response {
    let mut problems = Vec::new();
    let store_ok = match crate::store::within(LEDGER_ANSWER, ctx.ledger.ping()).await {
        Ok(()) => true,
        Err(e) => {
            problems.push(format!("store: {e}"));
            false
        }
    };
    let now = ctx.clock.now();
    let tz = ctx.settings.daemon.timezone.clone();
    let mut accounts = serde_json::Map::new();
    for (name, acc) in &ctx.accounts {
        let expr = acc
            .settings
            .schedule
            .clone()
            .unwrap_or_else(|| ctx.settings.daemon.schedule.clone());
        let period = schedule_period(&expr, &tz, now).unwrap_or(Duration::from_secs(300));
        let allowed = jiff::SignedDuration::try_from(period * 3).unwrap_or_default();
        // Without a ledger the polls' record is out of reach: each account then counts from the
        // start, and the store is the problem named.
        let last = match store_ok {
            true => crate::store::within(LEDGER_ANSWER, ctx.ledger.last_good_poll(name))
                .await
                .ok()
                .flatten(),
            false => None,
        };
        let reference = last.as_ref().map(|p| p.finished).unwrap_or(ctx.started);
        let age = now - reference;
        let polled = now.duration_since(reference) <= allowed;
        if !polled {
            problems.push(format!(
                "account {name}: no successful poll for {}s (allowed {}s)",
                age.get_seconds(),
                allowed.as_secs()
            ));
        }
        // A revoked authorization does not heal by waiting: say so at once, not 3 periods later.
        let stopped = acc.source.stopped();
        if let Some(why) = &stopped {
            problems.push(format!("account {name}: stopped: {why}"));
        }
        accounts.insert(
            name.clone(),
            json!({
                "last_successful_poll": last.map(|p| p.finished.to_string()),
                "ok": polled && stopped.is_none(),
                "stopped": stopped,
            }),
        );
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        json!({"status": if problems.is_empty() { "ok" } else { "unhealthy" }, "problems": problems, "accounts": accounts}),
    )
}

/// The time between two consecutive fires of a cron expression after `now`.
fn schedule_period(expr: &str, tz: &jiff::tz::TimeZone, now: jiff::Timestamp) -> Option<Duration> {
    let cron = crate::schedule::parse(expr).ok()?;
    let a = crate::schedule::next_after(&cron, &now.to_zoned(tz.clone()))?;
    let b = crate::schedule::next_after(&cron, &a)?;
    Duration::try_from(b.timestamp().duration_since(a.timestamp())).ok()
}

async fn metrics(State(ctx): State<Arc<DaemonCtx>>) -> Response {
    match &ctx.metrics {
        Some(h) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}
