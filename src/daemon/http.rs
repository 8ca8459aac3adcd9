//! The daemon's HTTP surface: `POST /webhooks/mobbex/{account}?token=...`, `GET /healthz`,
//! `GET /metrics`.
//!
//! The webhook handler does no booking: it checks the URL token (constant time), reads the
//! operation id from the body, writes a trigger to the durable inbox and answers 200 at once.
//! Request URIs are never logged (the token is in the query string).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::DaemonCtx;
use super::webhook::{self, Trigger};

/// Largest webhook body accepted (Mobbex bodies are a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(ctx: Arc<DaemonCtx>) -> Router {
    Router::new()
        .route("/webhooks/mobbex/{account}", post(mobbex_webhook))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(ctx)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn mobbex_webhook(
    State(ctx): State<Arc<DaemonCtx>>,
    Path(account): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = ctx.clock.now();
    metrics::counter!(crate::metrics::WEBHOOKS, "account" => account.clone()).increment(1);
    let Some(acc) = ctx.accounts.get(&account) else {
        warn!(account = %account, "webhook for an unknown account refused");
        return json_response(StatusCode::NOT_FOUND, json!({"error": "unknown account"}));
    };
    let authorized = match (&acc.settings.webhook_token, &q.token) {
        (Some(expected), Some(given)) => {
            bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes()))
        }
        _ => false,
    };
    if !authorized {
        warn!(account = %account, token_given = q.token.is_some(), "webhook with a wrong or missing token refused");
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "wrong or missing token"}),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let trigger = match webhook::parse(content_type, &body) {
        Ok(t) => t,
        Err(e) => {
            warn!(account = %account, bytes = body.len(), error = %e, "webhook body refused");
            return json_response(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
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
            let depth = ctx
                .ledger
                .inbox_depth()
                .await
                .ok()
                .and_then(|d| d.get(&account).copied())
                .unwrap_or(0);
            // Past the limit, refuse with 429: Mobbex retries, polling covers, the inbox stays bounded.
            if depth >= ctx.settings.daemon.inbox_limit {
                warn!(account = %account, uid = %uid, depth, "inbox full; webhook refused with 429");
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "60")],
                    axum::Json(json!({"error": "inbox full, retry later"})),
                )
                    .into_response();
            }
            match ctx
                .ledger
                .inbox_push(&account, &uid, received, reference.as_deref())
                .await
            {
                Ok(queued) => {
                    info!(account = %account, uid = %uid, kind = %kind, queued, "webhook received");
                    ctx.inbox_wake.notify_one();
                    json_response(StatusCode::OK, json!({"ok": true, "queued": queued}))
                }
                Err(e) => {
                    // Not 200: Mobbex will send it again, and polling covers it anyway.
                    warn!(account = %account, uid = %uid, error = %e, "could not queue a webhook");
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": "could not store the trigger"}),
                    )
                }
            }
        }
    }
}

/// 200 when the store answers and every account polled successfully within 3 schedule periods
/// (counted from the daemon's start for a fresh daemon); 503 with the reasons otherwise.
async fn healthz(State(ctx): State<Arc<DaemonCtx>>) -> Response {
    let mut problems = Vec::new();
    if let Err(e) = ctx.ledger.ping().await {
        problems.push(format!("store: {e}"));
    }
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
        let last = ctx.ledger.last_good_poll(name).await.ok().flatten();
        let reference = last.as_ref().map(|p| p.finished).unwrap_or(ctx.started);
        let age = now - reference;
        let ok = now.duration_since(reference) <= allowed;
        if !ok {
            problems.push(format!(
                "account {name}: no successful poll for {}s (allowed {}s)",
                age.get_seconds(),
                allowed.as_secs()
            ));
        }
        accounts.insert(
            name.clone(),
            json!({
                "last_successful_poll": last.map(|p| p.finished.to_string()),
                "ok": ok,
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
