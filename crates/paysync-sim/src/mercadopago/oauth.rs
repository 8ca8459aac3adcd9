//! Mercado Pago's access tokens and `POST /oauth/token` (MercadoLibre's OAuth, the contract's
//! "POST /oauth/token" section).
//!
//! Valid access tokens: the static one of the options (until revoked; it never expires) and every
//! one the token endpoint granted, until its expiry instant. Expiry is measured with
//! `tokio::time::Instant`, so a test with paused time can advance past it.
//!
//! Refresh tokens rotate: exactly one is valid at a time; a successful refresh kills the one sent
//! and issues `TG-sim-<n>` with a new access token `APP_USR-sim-<n>`. Reusing a dead one, or
//! sending an unknown one, is `invalid_grant`. The check and the rotation happen under the state's
//! lock, so of two concurrent refreshes with the same token exactly one wins. Old access tokens
//! keep working until their own expiry (the real server does the same).
//!
//! The token endpoint has its own faults: `mp_token_latency` (slept after reading the request and
//! before deciding, so refreshes overlap), `mp_token_lost_after_commit_rate` (rotated, then a
//! proxy answers 502 with an empty body) and answers queued for
//! [`SimApi::MercadoPagoToken`](crate::SimApi::MercadoPagoToken) (instead of the whole request:
//! nothing rotated). The random `mp_*` rates of the API calls do not apply to it.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::super::{Shared, SimApi, Simulator, State, faults};
use super::{body, error};

/// The tokens the Mercado Pago side knows.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    /// Granted access tokens and the instant each expires.
    pub access: HashMap<String, Instant>,
    pub static_revoked: bool,
    /// The one refresh token valid now (the options' one at start).
    pub refresh: String,
    /// The last `<n>` of `TG-sim-<n>` / `APP_USR-sim-<n>`.
    pub issued: u64,
    /// Successful grants (refresh or authorization code).
    pub grants: u64,
    /// Every `POST /oauth/token`, faulted or not.
    pub requests: u64,
    /// The authorization code `grant_type=authorization_code` accepts once.
    pub auth_code: Option<String>,
}

/// Whether `token` may call the API now.
pub(crate) fn access_token_valid(s: &State, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    if token == s.opts.mp_access_token {
        return !s.mp.tokens.static_revoked;
    }
    s.mp.tokens
        .access
        .get(token)
        .is_some_and(|expiry| Instant::now() < *expiry)
}

/// `application/x-www-form-urlencoded` text as a map (the last of a repeated key wins).
fn form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `+` is a space; `%XX` a byte; a malformed escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3) {
                Some(h) if h.iter().all(u8::is_ascii_hexdigit) => {
                    let hex = std::str::from_utf8(h).unwrap_or("0");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request's parameters, from a JSON object or a form body. `Err`: JSON that is not an
/// object of scalars.
fn params(headers: &HeaderMap, raw: &[u8]) -> Result<HashMap<String, String>, ()> {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !json_body {
        return Ok(form(&String::from_utf8_lossy(raw)));
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(raw) else {
        return Err(());
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            _ => None,
        })
        .collect())
}

fn oauth_error(code: &str, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, code, message, json!([]))
}

fn invalid_grant() -> Response {
    oauth_error(
        "invalid_grant",
        "Your authorization code or refresh token may be expired or it was already used",
    )
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let latency = {
        let mut s = state.lock().expect("poisoned");
        s.count("POST /oauth/token");
        s.stats.mp_token_calls += 1;
        s.mp.tokens.requests += 1;
        if let Some(r) = faults::next_answer(&mut s, SimApi::MercadoPagoToken) {
            return r;
        }
        s.opts.faults.mp_token_latency
    };
    let Ok(p) = params(&headers, &raw) else {
        return oauth_error(
            "invalid_request",
            "the body must be a JSON object or a form",
        );
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let mut s = state.lock().expect("poisoned");
    if get("client_id") != s.opts.mp_client_id || get("client_secret") != s.opts.mp_client_secret {
        return oauth_error("invalid_client", "invalid client_id or client_secret");
    }
    match get("grant_type") {
        "refresh_token" => {
            let sent = get("refresh_token");
            if sent.is_empty() || sent != s.mp.tokens.refresh {
                return invalid_grant();
            }
        }
        "authorization_code" => {
            let sent = get("code");
            if sent.is_empty() || s.mp.tokens.auth_code.as_deref() != Some(sent) {
                return invalid_grant();
            }
            s.mp.tokens.auth_code = None;
        }
        _ => {
            return oauth_error(
                "unsupported_grant_type",
                "grant_type must be refresh_token or authorization_code",
            );
        }
    }
    let granted = grant(&mut s);
    let rate = s.opts.faults.mp_token_lost_after_commit_rate;
    if s.hit(rate) {
        s.note_fault("mp token lost after commit");
        return (StatusCode::BAD_GATEWAY, Body::empty()).into_response();
    }
    body(StatusCode::OK, granted.to_string())
}

/// Rotate: a new refresh token replaces the valid one, a new access token is valid for
/// `mp_access_ttl`. Returns the 200 body.
fn grant(s: &mut State) -> Value {
    let t = &mut s.mp.tokens;
    t.issued += 1;
    t.grants += 1;
    let n = t.issued;
    let access = format!("APP_USR-sim-{n}");
    t.refresh = format!("TG-sim-{n}");
    let ttl = s.opts.mp_access_ttl;
    t.access.insert(access.clone(), Instant::now() + ttl);
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": "offline_access read write",
        "user_id": s.opts.mp_seller_id,
        "refresh_token": t.refresh,
        "public_key": format!("APP_USR-sim-pk-{n}"),
    })
}

impl Simulator {
    /// The refresh token the token endpoint accepts now (the options' one until the first grant).
    pub fn mp_refresh_token(&self) -> String {
        self.with(|s| s.mp.tokens.refresh.clone())
    }

    /// How many grants (refreshes, authorization codes) succeeded, lost answers included.
    pub fn mp_token_grants(&self) -> u64 {
        self.with(|s| s.mp.tokens.grants)
    }

    /// How many `POST /oauth/token` arrived, faulted or refused included (not reset by
    /// `reset_stats`).
    pub fn mp_token_requests(&self) -> u64 {
        self.with(|s| s.mp.tokens.requests)
    }

    /// The granted access tokens still valid now, oldest first (the static one left out).
    pub fn mp_valid_access_tokens(&self) -> Vec<String> {
        self.with(|s| {
            let now = Instant::now();
            let mut v: Vec<(Instant, String)> =
                s.mp.tokens
                    .access
                    .iter()
                    .filter(|(_, e)| now < **e)
                    .map(|(t, e)| (*e, t.clone()))
                    .collect();
            v.sort();
            v.into_iter().map(|(_, t)| t).collect()
        })
    }

    /// Every granted access token expires now (the static one stays valid: see
    /// [`Self::revoke_mp_static_token`]).
    pub fn expire_mp_access_tokens(&self) {
        self.with(|s| {
            let now = Instant::now();
            s.mp.tokens.access.values_mut().for_each(|e| *e = now);
        });
    }

    /// Every granted access token at least `age` old expires now (a server that invalidates
    /// tokens early, but not one it has just granted).
    pub fn expire_mp_access_tokens_older_than(&self, age: std::time::Duration) {
        self.with(|s| {
            let now = Instant::now();
            let ttl = s.opts.mp_access_ttl;
            for expires in s.mp.tokens.access.values_mut() {
                // Granted at `expires - ttl`.
                if *expires + age <= now + ttl {
                    *expires = now;
                }
            }
        });
    }

    /// The static access token of the options answers 401 from now on.
    pub fn revoke_mp_static_token(&self) {
        self.with(|s| s.mp.tokens.static_revoked = true);
    }

    /// The code `grant_type=authorization_code` accepts, once (it then rotates like a refresh).
    pub fn set_mp_auth_code(&self, code: &str) {
        self.with(|s| s.mp.tokens.auth_code = Some(code.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_decoded() {
        let f = form("grant_type=refresh_token&refresh_token=TG%2Dsim%2D1&x=a+b&bad=%zz&cut=%4");
        assert_eq!(f["grant_type"], "refresh_token");
        assert_eq!(f["refresh_token"], "TG-sim-1");
        assert_eq!(f["x"], "a b");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(f["cut"], "%4");
    }
}
