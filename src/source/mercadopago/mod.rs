//! The Mercado Pago API client (facts: `shared/spec/mercadolibre-api.md` §3, §4; the wire
//! contract: `docs/mercadopago-contract.md`, which decides where the facts are silent).
//!
//! - `GET /v1/payments/search?sort=..&criteria=asc&range=..&begin_date=..&end_date=..&offset=..&limit=50`
//!   for a window, `GET /v1/payments/{id}` for one payment, `GET /users/me` for the seller, and
//!   `GET {meli_api_url}/orders/{id}` for the payments of a MercadoLibre order.
//! - `Authorization: Bearer <token>` on every call, the header marked sensitive; the token comes
//!   from [`AccessTokens`] (a static one, or an OAuth implementation that refreshes) and a 401 asks
//!   it once for another before the call is tried again. No token ever goes into an error or a log.
//! - Answers are judged by [`classify`], the one table of answers; amounts are read from their
//!   JSON text into `Decimal` (`payment.rs`), never through `f64`.
//!
//! Must not: store tokens (the integrator's `AccessTokens` does), decide what a status means for
//! booking (`status.rs` does) or split windows (the caller does, from [`MAX_PAGES`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use url::Url;

mod answers;
pub mod oauth;
mod payment;
pub mod rotation;
pub mod status;
pub mod webhook;

pub use answers::classify;
pub use payment::{parse_payment, parse_search};

use super::{Fetched, PAST_PAGE_CEILING, Page, PaymentSource, SourceError, Window, WindowField};
use crate::domain::Operation;
use crate::http_client::describe_reqwest;
use crate::retry::{RetryPolicy, retrying};

/// The API's name in errors (`SourceError`'s `api`).
pub(crate) const API: &str = "Mercado Pago";
/// The MercadoLibre API's name in errors (orders live there, not at Mercado Pago).
pub(crate) const MELI_API: &str = "MercadoLibre";
/// The metrics' and retries' label.
const LABEL: &str = "mercadopago";
/// The page size the adapter asks for (the search allows up to 1000; 50 keeps a page's work and
/// a bad page's cost small).
pub const PAGE_SIZE: u32 = 50;
/// The search refuses `offset + limit` past this (error 1000, "Number of rows exceeded the limits").
pub const OFFSET_CEILING: u32 = 10_000;
/// Pages `0..MAX_PAGES` of one window can be read; a window with more payments than
/// `MAX_PAGES * PAGE_SIZE` must be split by the caller.
pub const MAX_PAGES: u32 = OFFSET_CEILING / PAGE_SIZE;

/// Where the account's APIs are.
#[derive(Debug, Clone)]
pub struct MercadoPagoConfig {
    /// Mercado Pago (`https://api.mercadopago.com`): payments, `/users/me`.
    pub api_url: Url,
    /// MercadoLibre (`https://api.mercadolibre.com`): orders.
    pub meli_api_url: Url,
    /// For one request, answer included.
    pub timeout: Duration,
}

/// Where the access token comes from. `current` gives the token to send; `after_unauthorized`
/// is called once when a call was answered 401 with `rejected`, and gives the token to try the
/// call again with (an OAuth implementation refreshes, unless another call already has and its
/// token differs from `rejected`).
#[async_trait]
pub trait AccessTokens: Send + Sync {
    async fn current(&self) -> Result<SecretString, SourceError>;
    async fn after_unauthorized(
        &self,
        rejected: &SecretString,
    ) -> Result<SecretString, SourceError>;
    /// Why no token can be had any more (an authorization revoked), for `/healthz`.
    fn stopped(&self) -> Option<String> {
        None
    }
}

/// A fixed access token (an application's own token, no OAuth): a 401 is final.
pub struct StaticToken(pub SecretString);

#[async_trait]
impl AccessTokens for StaticToken {
    async fn current(&self) -> Result<SecretString, SourceError> {
        Ok(self.0.clone())
    }
    async fn after_unauthorized(
        &self,
        _rejected: &SecretString,
    ) -> Result<SecretString, SourceError> {
        Err(SourceError::Unauthorized {
            api: API,
            status: 401,
            message: "access token refused (a fixed token cannot be renewed)".into(),
        })
    }
}

pub struct MercadoPagoClient {
    http: reqwest::Client,
    api_url: Url,
    meli_api_url: Url,
    tokens: Arc<dyn AccessTokens>,
    retry: RetryPolicy,
    /// The token's user, once read (`/users/me`): it does not change for an account.
    seller: OnceLock<u64>,
}

/// An answer as it came: status, `Retry-After`, body.
type Answer = (u16, Option<Duration>, Vec<u8>);

impl MercadoPagoClient {
    pub fn new(
        config: MercadoPagoConfig,
        tokens: Arc<dyn AccessTokens>,
    ) -> Result<MercadoPagoClient, SourceError> {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("application/json"));
        // TLS roots are loaded unless both bases are plain http (`client_builder_for`).
        let tls_base = if config.api_url.scheme() == "http" {
            &config.meli_api_url
        } else {
            &config.api_url
        };
        let http = crate::http_client::client_builder_for(tls_base)
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("paysync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Transport {
                api: API,
                message: describe_reqwest(&e),
            })?;
        Ok(MercadoPagoClient {
            http,
            api_url: config.api_url,
            meli_api_url: config.meli_api_url,
            tokens,
            retry: RetryPolicy::default(),
            seller: OnceLock::new(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> MercadoPagoClient {
        self.retry = retry;
        self
    }

    /// How many pages of one window can be read (`list_page` refuses page `MAX_PAGES` and
    /// later): the caller splits a window that has more.
    pub fn page_ceiling() -> Option<u32> {
        Some(MAX_PAGES)
    }

    /// The seller's user id (the token's user), read from `/users/me` once and kept.
    pub async fn seller_id(&self) -> Result<u64, SourceError> {
        if let Some(id) = self.seller.get() {
            return Ok(*id);
        }
        self.users_me().await
    }

    /// The ids of the payments of MercadoLibre order `order_id` (digits), from
    /// `GET {meli_api_url}/orders/{id}`; the caller turns each into a trigger.
    pub async fn order_payments(&self, order_id: &str) -> Result<Vec<String>, SourceError> {
        let not_found = || SourceError::NotFound {
            api: MELI_API,
            uid: order_id.to_string(),
        };
        let Some(id) = id_digits(order_id) else {
            return Err(not_found());
        };
        let url = url_with(&self.meli_api_url, &["orders", &id])?;
        let read = |status, retry_after, body: &[u8]| {
            let text = classify(MELI_API, status, retry_after, body)?;
            read_order_payments(text)
        };
        match self.call(MELI_API, "get_order", url, &[], read).await {
            Err(SourceError::Http { status: 404, .. }) => Err(not_found()),
            r => r,
        }
    }

    async fn users_me(&self) -> Result<u64, SourceError> {
        let url = url_with(&self.api_url, &["users", "me"])?;
        let read = |status, retry_after, body: &[u8]| {
            #[derive(Deserialize)]
            struct Me<'a> {
                #[serde(borrow)]
                id: Option<&'a RawValue>,
            }
            let text = classify(API, status, retry_after, body)?;
            serde_json::from_str::<Me>(text)
                .ok()
                .and_then(|m| m.id)
                .and_then(id_of_raw)
                .and_then(|id| id.parse::<u64>().ok())
                .ok_or_else(|| SourceError::Malformed {
                    api: API,
                    message: "/users/me has no numeric id".into(),
                })
        };
        let id = self.call(API, "users_me", url, &[], read).await?;
        let _ = self.seller.set(id);
        Ok(id)
    }

    /// One call: sent with the current token, and once more with the token
    /// [`AccessTokens::after_unauthorized`] gives if the first is answered 401 (a second 401 is
    /// final). Each of the two is retried on passing failures by [`retrying`]; `read` turns an
    /// answer into the result or its error (through [`classify`]).
    async fn call<T>(
        &self,
        api: &'static str,
        endpoint: &'static str,
        url: Url,
        query: &[(&str, String)],
        read: impl Fn(u16, Option<Duration>, &[u8]) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let token = self.tokens.current().await?;
        match self
            .call_with(api, &token, endpoint, &url, query, &read)
            .await
        {
            Err(SourceError::Unauthorized { status: 401, .. }) => {
                let fresh = self.tokens.after_unauthorized(&token).await?;
                self.call_with(api, &fresh, endpoint, &url, query, &read)
                    .await
            }
            r => r,
        }
    }

    async fn call_with<T>(
        &self,
        api: &'static str,
        token: &SecretString,
        endpoint: &'static str,
        url: &Url,
        query: &[(&str, String)],
        read: &impl Fn(u16, Option<Duration>, &[u8]) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let mut auth =
            HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).map_err(|_| {
                SourceError::Unauthorized {
                    api,
                    status: 0,
                    message: "the access token has characters not allowed in a header".into(),
                }
            })?;
        auth.set_sensitive(true);
        retrying(&self.retry, LABEL, endpoint, || async {
            let (status, retry_after, body) = self
                .get_once(api, endpoint, url.clone(), query, auth.clone())
                .await?;
            read(status, retry_after, &body)
        })
        .await
    }

    /// Send a GET; its status, `Retry-After` and body (transport failures are errors).
    async fn get_once(
        &self,
        api: &'static str,
        endpoint: &'static str,
        url: Url,
        query: &[(&str, String)],
        auth: HeaderValue,
    ) -> Result<Answer, SourceError> {
        let started = std::time::Instant::now();
        let sent = self
            .http
            .get(url)
            .query(query)
            .header(AUTHORIZATION, auth)
            .send()
            .await;
        let status_label = match &sent {
            Ok(r) => r.status().as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        crate::metrics::api_request(LABEL, endpoint, &status_label, started.elapsed());
        let transport = |e: reqwest::Error| SourceError::Transport {
            api,
            message: describe_reqwest(&e),
        };
        let resp = sent.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        let body = resp.bytes().await.map_err(transport)?;
        Ok((status, retry_after, body.into()))
    }
}

#[async_trait]
impl PaymentSource for MercadoPagoClient {
    async fn list_page(&self, window: &Window, page: u32) -> Result<Page, SourceError> {
        let offset = page
            .checked_mul(PAGE_SIZE)
            .filter(|o| o.saturating_add(PAGE_SIZE) <= OFFSET_CEILING);
        let Some(offset) = offset else {
            return Err(SourceError::Api {
                api: API,
                code: PAST_PAGE_CEILING.into(),
                message: format!(
                    "page {page} is past the search's {OFFSET_CEILING} rows: split the window \
                     (at most {MAX_PAGES} pages of {PAGE_SIZE})"
                ),
            });
        };
        let field = match window.field {
            WindowField::Created => "date_created",
            WindowField::Updated => "date_last_updated",
        };
        // Whether the search's bounds are inclusive, and to the millisecond, is not documented
        // (research notes): it is asked a second wider on each side, and what comes back is
        // cut to the window exactly, so slices that tile to the millisecond each keep their own.
        let query = [
            ("sort", field.to_string()),
            ("criteria", "asc".to_string()),
            ("range", field.to_string()),
            ("begin_date", search_date(window.from - BOUND_MARGIN)),
            ("end_date", search_date(window.to + BOUND_MARGIN)),
            ("offset", offset.to_string()),
            ("limit", PAGE_SIZE.to_string()),
        ];
        let url = url_with(&self.api_url, &["v1", "payments", "search"])?;
        let read = |status, retry_after, body: &[u8]| {
            parse_search(classify(API, status, retry_after, body)?)
        };
        match self.call(API, "search_payments", url, &query, read).await {
            Ok(mut p) => {
                p.items.retain(|item| within(window, item));
                Ok(p)
            }
            // "Number of rows exceeded the limits": a ceiling lower than ours; the window is
            // split like one past OFFSET_CEILING.
            Err(SourceError::Api { code, message, .. }) if code == "1000" => {
                Err(SourceError::Api {
                    api: API,
                    code: PAST_PAGE_CEILING.into(),
                    message,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn get_operation(&self, uid: &str) -> Result<Operation, SourceError> {
        let not_found = || SourceError::NotFound {
            api: API,
            uid: uid.to_string(),
        };
        // Mercado Pago's ids are numbers: anything else names no payment, and is not sent.
        let Some(id) = id_digits(uid) else {
            return Err(not_found());
        };
        let url = url_with(&self.api_url, &["v1", "payments", &id])?;
        let read = |status, retry_after, body: &[u8]| {
            let text = classify(API, status, retry_after, body)?;
            parse_payment(text).map_err(|message| SourceError::Malformed { api: API, message })
        };
        match self.call(API, "get_payment", url, &[], read).await {
            Err(SourceError::Http { status: 404, .. }) => Err(not_found()),
            r => r,
        }
    }

    async fn check(&self) -> Result<(), SourceError> {
        self.users_me().await.map(|_| ())
    }

    fn page_ceiling(&self) -> Option<u32> {
        Self::page_ceiling()
    }

    async fn expand_trigger(&self, uid: &str) -> Option<Result<Vec<String>, SourceError>> {
        let order = uid.strip_prefix(ORDER_TRIGGER)?;
        Some(self.order_payments(order).await)
    }

    fn stopped(&self) -> Option<String> {
        self.tokens.stopped()
    }

    fn merchant_id(&self) -> Option<String> {
        self.seller.get().map(u64::to_string)
    }
}

/// The inbox uid of a MercadoLibre order's notification (`ml-order:<id>`): its payments are each
/// queued as a trigger of their own when it is processed. Payment ids are digits, so the two
/// never collide.
pub const ORDER_TRIGGER: &str = "ml-order:";

/// The ids of an order's `payments[]`.
fn read_order_payments(text: &str) -> Result<Vec<String>, SourceError> {
    #[derive(Deserialize)]
    struct Order<'a> {
        #[serde(borrow)]
        payments: Option<Vec<OrderPayment<'a>>>,
    }
    #[derive(Deserialize)]
    struct OrderPayment<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    let malformed = |message: String| SourceError::Malformed {
        api: MELI_API,
        message,
    };
    if !text.trim_start().starts_with('{') {
        return Err(malformed("order is not an object".into()));
    }
    let order: Order = serde_json::from_str(text)
        .map_err(|e| malformed(format!("order has no payments list: {e}")))?;
    let payments = order
        .payments
        .ok_or_else(|| malformed("order has no payments list".into()))?;
    payments
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            p.id.and_then(id_of_raw)
                .ok_or_else(|| malformed(format!("payments[{i}] has no numeric id")))
        })
        .collect()
}

/// A window bound as the search wants it: UTC, milliseconds, `-00:00` (floored to the
/// millisecond: Mercado Pago's dates have no finer part, so nothing inside the bound is lost).
/// How much wider than the window the search is asked (see `list_page`).
const BOUND_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// The item falls in the window by the window's own field (a bad document is always kept: it is
/// recorded, not dropped).
fn within(window: &Window, item: &Fetched) -> bool {
    match item {
        Fetched::Op(op) => {
            let t = match window.field {
                WindowField::Created => op.created,
                WindowField::Updated => op.updated.unwrap_or(op.created),
            };
            window.from <= t && t <= window.to
        }
        Fetched::Bad { .. } => true,
    }
}

fn search_date(t: jiff::Timestamp) -> String {
    let ms = jiff::Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t);
    ms.strftime("%Y-%m-%dT%H:%M:%S%.3f-00:00").to_string()
}

/// `base` with `segments` appended to its path (each one escaped).
fn url_with(base: &Url, segments: &[&str]) -> Result<Url, SourceError> {
    let mut u = base.clone();
    u.path_segments_mut()
        .map_err(|_| SourceError::Malformed {
            api: API,
            message: "the API URL cannot take a path".into(),
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(u)
}

/// An id of digits in canonical form (no leading zeros), or `None`: Mercado Pago's payment,
/// order and user ids are all unsigned numbers.
pub(crate) fn id_digits(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().map(|n| n.to_string())
}

/// An id written as a JSON number or a JSON string of digits.
pub(crate) fn id_of_raw(raw: &RawValue) -> Option<String> {
    let text = raw.get().trim();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => id_digits(inner),
        None => id_digits(text),
    }
}

#[cfg(test)]
mod tests;
