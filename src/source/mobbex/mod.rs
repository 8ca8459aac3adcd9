//! The Mobbex API client and its wire format (facts: `shared/spec/mobbex-api.md`).
//!
//! - `GET /p/entity/operations?page=N&limit=50&created_from=..&created_to=..` (or `updated_*`),
//!   pages from 0 until a short page; `GET /p/operations/{uid}` for one operation.
//! - Headers `x-api-key` / `x-access-token` (marked sensitive so they never show in debug output).
//! - Status codes arrive as strings, totals as JSON numbers: totals are read from their exact
//!   text into `Decimal` (never through `f64`).
//! - `{result:false, code, error}` answers become [`SourceError::Api`] with Mobbex's message.
//! - The merchant's charges (`totals.entity_charges`, the fees) are in list documents only; a
//!   client that books fees ([`MobbexClient::with_charges`]) completes a single operation with
//!   them from the listing by its `reference` (`charges`).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use reqwest::header::{HeaderMap, HeaderValue};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use url::Url;

mod charges;
mod list;
pub mod status;
pub mod webhook;

pub use list::parse_list;
use list::read_list;

use super::{Page, PaymentSource, SourceError, Window, WindowField};
use crate::domain::Operation;
use crate::http_client::describe_reqwest;
use crate::retry::{RetryPolicy, retrying};

pub(crate) const API: &str = "Mobbex";
/// Mobbex's maximum page size.
pub const PAGE_SIZE: usize = 50;

pub struct MobbexClient {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
    /// The account books fees: an operation read alone is completed with its charges.
    charges: bool,
}

impl MobbexClient {
    pub fn new(
        base: Url,
        api_key: &SecretString,
        access_token: &SecretString,
        timeout: Duration,
    ) -> Result<MobbexClient, SourceError> {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-api-key", api_key.expose_secret()),
            ("x-access-token", access_token.expose_secret()),
        ] {
            let mut v = HeaderValue::from_str(value).map_err(|_| SourceError::Malformed {
                api: API,
                message: format!("{name} contains characters not allowed in a header"),
            })?;
            v.set_sensitive(true);
            headers.insert(name, v);
        }
        headers.insert("accept", HeaderValue::from_static("application/json"));
        headers.insert("cache-control", HeaderValue::from_static("no-cache"));
        let http = crate::http_client::client_builder_for(&base)
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("paysync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Transport {
                api: API,
                message: e.to_string(),
            })?;
        Ok(MobbexClient {
            http,
            base,
            retry: RetryPolicy::default(),
            charges: false,
        })
    }

    /// For an account that books fees (`fees_account`): [`PaymentSource::get_operation`] also
    /// reads the operation's charges, which only the listing carries (see `charges`).
    pub fn with_charges(mut self, charges: bool) -> MobbexClient {
        self.charges = charges;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> MobbexClient {
        self.retry = retry;
        self
    }

    /// [`Self::get_once`], retried on passing failures (5xx, 429 with Retry-After, network);
    /// `read` turns an answer (status, `Retry-After`, body) into the result or its error.
    async fn get<T>(
        &self,
        endpoint: &'static str,
        url: Url,
        query: &[(&str, String)],
        read: impl Fn(u16, Option<Duration>, &[u8]) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        retrying(&self.retry, "mobbex", endpoint, || async {
            let (status, retry_after, body) = self.get_once(endpoint, url.clone(), query).await?;
            read(status, retry_after, &body)
        })
        .await
    }

    /// [`Self::get`] of an answer whose `data` member is read by [`classify`], as raw JSON text.
    async fn get_data(
        &self,
        endpoint: &'static str,
        url: Url,
        query: &[(&str, String)],
    ) -> Result<String, SourceError> {
        self.get(endpoint, url, query, |status, retry_after, body| {
            classify(status, retry_after, &String::from_utf8_lossy(body))
        })
        .await
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let prefix = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{prefix}{path}"));
        u
    }

    /// Send a GET; its status, `Retry-After` and body (transport failures are errors).
    async fn get_once(
        &self,
        endpoint: &'static str,
        url: Url,
        query: &[(&str, String)],
    ) -> Result<(u16, Option<Duration>, Vec<u8>), SourceError> {
        let started = std::time::Instant::now();
        let sent = self.http.get(url).query(query).send().await;
        let status_label = match &sent {
            Ok(r) => r.status().as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        crate::metrics::api_request("mobbex", endpoint, &status_label, started.elapsed());
        let resp = sent.map_err(|e| SourceError::Transport {
            api: API,
            message: describe_reqwest(&e),
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        let body = resp.bytes().await.map_err(|e| SourceError::Transport {
            api: API,
            message: describe_reqwest(&e),
        })?;
        // `Bytes` into `Vec` reuses the buffer (it is the body's only owner).
        Ok((status, retry_after, body.into()))
    }
}

/// What an answer means, decided by what happened (the HTTP status) first and by the body only
/// for the message: the one table of Mobbex answers (RELIABILITY.md, "Mobbex answers").
///
/// | answer | error | retried |
/// |---|---|---|
/// | 2xx `{result: true, data}` | — (the `data` text) | — |
/// | 2xx `{result: false, code, error}` | `Api` (a business answer) | no |
/// | 2xx anything else | `Malformed` | no |
/// | 429, with or without `Retry-After` | `RateLimited` | yes, after `Retry-After` (else backoff) |
/// | any 5xx, whatever the body (JSON envelope, HTML, text, empty) | `Http` | yes |
/// | 408 | `Http` | yes |
/// | 401, 403 | `Unauthorized` | no |
/// | 404 | `Http` (`NotFound` for one operation) | no |
/// | other 4xx | `Api` if the body is an envelope, else `Http` | no |
///
/// (Transport failures — refused, reset, timed out, a body cut short — never reach this function:
/// they are `Transport`, retried.)
pub fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> Result<String, SourceError> {
    let envelope: Option<Envelope> = serde_json::from_str(body).ok();
    let envelope_message = |e: &Option<Envelope>| {
        e.as_ref()
            .and_then(|e| e.error.clone().or_else(|| e.status_message.clone()))
    };
    match status {
        429 => Err(SourceError::RateLimited {
            api: API,
            retry_after,
        }),
        500..=599 | 408 => Err(SourceError::Http {
            api: API,
            status,
            message: envelope_message(&envelope).unwrap_or_else(|| snippet(body)),
        }),
        401 | 403 => Err(SourceError::Unauthorized {
            api: API,
            status,
            message: envelope_message(&envelope)
                .unwrap_or_else(|| "check api_key and access_token".into()),
        }),
        200..=299 => match envelope {
            Some(Envelope {
                result: Some(true),
                data: Some(data),
                ..
            }) => Ok(data.get().to_string()),
            Some(Envelope {
                result: Some(false),
                code,
                error,
                status_message,
                ..
            }) => Err(api_error(status, code, error.or(status_message))),
            _ => Err(SourceError::Malformed {
                api: API,
                message: format!(
                    "expected {{\"result\":true,\"data\":...}}, got {}",
                    snippet(body)
                ),
            }),
        },
        _ => match envelope {
            Some(Envelope {
                result: Some(false),
                code,
                error,
                status_message,
                ..
            }) if status != 404 => Err(api_error(status, code, error.or(status_message))),
            e => Err(SourceError::Http {
                api: API,
                status,
                message: envelope_message(&e).unwrap_or_else(|| snippet(body)),
            }),
        },
    }
}

fn api_error(status: u16, code: Option<Box<RawValue>>, message: Option<String>) -> SourceError {
    SourceError::Api {
        api: API,
        code: code
            .map(|c| c.get().trim_matches('"').to_string())
            .unwrap_or_else(|| format!("HTTP {status}")),
        message: message.unwrap_or_else(|| "no message".into()),
    }
}

#[derive(Deserialize)]
struct Envelope {
    result: Option<bool>,
    data: Option<Box<RawValue>>,
    code: Option<Box<RawValue>>,
    error: Option<String>,
    status_message: Option<String>,
}

/// `GET /p/operations/{uid}` answer: `data.transaction.payment` is shaped like a webhook's.
#[derive(Deserialize)]
struct OneData<'a> {
    #[serde(borrow)]
    transaction: Option<Transaction<'a>>,
}
#[derive(Deserialize)]
struct Transaction<'a> {
    #[serde(borrow)]
    payment: Option<WirePayment<'a>>,
}
#[derive(Deserialize)]
struct WirePayment<'a> {
    id: Option<String>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow)]
    total: Option<&'a RawValue>,
    #[serde(borrow)]
    currency: Option<&'a RawValue>,
    reference: Option<String>,
    created: Option<String>,
    updated: Option<String>,
}

#[async_trait]
impl PaymentSource for MobbexClient {
    async fn list_page(&self, window: &Window, page: u32) -> Result<Page, SourceError> {
        let (from_key, to_key) = match window.field {
            WindowField::Created => ("created_from", "created_to"),
            WindowField::Updated => ("updated_from", "updated_to"),
        };
        let query = [
            ("page", page.to_string()),
            ("limit", PAGE_SIZE.to_string()),
            (from_key, window.from.as_millisecond().to_string()),
            (to_key, window.to.as_millisecond().to_string()),
        ];
        let url = self.url("/p/entity/operations");
        self.get("list_operations", url, &query, read_list).await
    }

    async fn get_operation(&self, uid: &str) -> Result<Operation, SourceError> {
        let mut url = self.url("/p/operations/");
        url.path_segments_mut()
            .map_err(|_| SourceError::Malformed {
                api: API,
                message: "api_url cannot take a path".into(),
            })?
            .pop_if_empty()
            .push(uid);
        match self.get_data("get_operation", url, &[]).await {
            Err(SourceError::Http { status: 404, .. }) => Err(SourceError::NotFound {
                api: API,
                uid: uid.to_string(),
            }),
            Err(SourceError::Api { code, .. }) if code.contains("NOT_FOUND") => {
                Err(SourceError::NotFound {
                    api: API,
                    uid: uid.to_string(),
                })
            }
            Err(e) => Err(e),
            Ok(data) => {
                let op = parse_one(&data)?;
                if self.charges {
                    self.with_listed_charges(op).await
                } else {
                    Ok(op)
                }
            }
        }
    }

    async fn check(&self) -> Result<(), SourceError> {
        let now = Timestamp::now();
        let w = Window {
            field: WindowField::Created,
            from: now - jiff::SignedDuration::from_hours(24),
            to: now,
        };
        self.list_page(&w, 0).await.map(|_| ())
    }
}

fn parse_one(data: &str) -> Result<Operation, SourceError> {
    let malformed = |message: String| SourceError::Malformed { api: API, message };
    let one: OneData = serde_json::from_str(data).map_err(|e| malformed(e.to_string()))?;
    let p = one
        .transaction
        .and_then(|t| t.payment)
        .ok_or_else(|| malformed("no data.transaction.payment".into()))?;
    build(
        p.id,
        p.status,
        p.total,
        p.currency,
        p.reference,
        p.created,
        p.updated,
    )
    .map_err(malformed)
}

fn build(
    uid: Option<String>,
    status: Option<&RawValue>,
    total: Option<&RawValue>,
    currency: Option<&RawValue>,
    reference: Option<String>,
    created: Option<String>,
    updated: Option<String>,
) -> Result<Operation, String> {
    let uid = uid.filter(|u| !u.trim().is_empty()).ok_or("missing uid")?;
    if uid.len() > 200 {
        return Err(format!("uid is {} characters long", uid.len()));
    }
    let status = parse_status(status.ok_or("missing status")?)?;
    let total = parse_amount(total.ok_or("missing total")?)?;
    let currency = parse_currency(currency.ok_or("missing currency")?)?;
    let created = parse_time("created", created.as_deref().ok_or("missing created")?)?;
    let updated = match updated.as_deref() {
        None | Some("") => None,
        Some(u) => Some(parse_time("updated", u)?),
    };
    Ok(Operation {
        // Mobbex's own conventions, translated here and nowhere else: a multicard/multivendor
        // part's id starts with `CHD-`; test-mode operations carry the pseudo-currency `TEST`.
        is_child: uid.starts_with("CHD-"),
        is_test: currency.eq_ignore_ascii_case("TEST"),
        marketplace_order: None,
        refunds: status::refunds_of(status, total),
        fees: Vec::new(),
        uid,
        reference: reference.unwrap_or_default(),
        status: status::status_of(status),
        source_status: status.to_string(),
        total,
        currency,
        created,
        updated,
    })
}

/// Status codes come as strings ("200"); accept numbers too.
fn parse_status(raw: &RawValue) -> Result<u16, String> {
    let text = raw.get();
    // Single operations and webhooks nest it: `status: {code: "200", text: ...}`.
    #[derive(Deserialize)]
    struct Nested<'a> {
        #[serde(borrow)]
        code: &'a RawValue,
    }
    if text.trim_start().starts_with('{') {
        return match serde_json::from_str::<Nested>(text) {
            Ok(n) => parse_status(n.code),
            Err(_) => Err(format!("status {text} has no code")),
        };
    }
    let inner = text.trim_matches('"');
    inner
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("status {text} is not a numeric status code"))
}

/// Totals are JSON numbers with a dot decimal separator; read their exact text. A numeric string
/// with a dot is tolerated; anything else (a comma separator, words) is refused with the value.
pub fn parse_amount(raw: &RawValue) -> Result<Decimal, String> {
    let text = raw.get().trim();
    let inner = if let Some(s) = text.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        if s.contains(',') {
            return Err(format!(
                "total {text} uses a comma; expected a number with a dot decimal separator"
            ));
        }
        s.trim()
    } else {
        text
    };
    if inner.len() > 40 {
        return Err(format!("total {text} is too long to be an amount"));
    }
    Decimal::from_str(inner)
        .or_else(|_| Decimal::from_scientific(inner))
        .map_err(|_| format!("total {text} is not a number"))
}

/// A string in list documents, `{code: ...}` in single operations.
fn parse_currency(raw: &RawValue) -> Result<String, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cur {
        S(String),
        O {
            code: Option<String>,
            value: Option<String>,
        },
    }
    let c = match serde_json::from_str::<Cur>(raw.get()) {
        Ok(Cur::S(s)) => s,
        Ok(Cur::O { code, value }) => code.or(value).unwrap_or_default(),
        Err(_) => return Err(format!("currency {} is not a currency code", raw.get())),
    };
    let c = c.trim().to_ascii_uppercase();
    if c.len() != 3 && c != "TEST" || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
        return Err(format!("currency {c:?} is not a currency code"));
    }
    Ok(c)
}

fn parse_time(field: &str, s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("{field} {s:?} is not an ISO-8601 timestamp: {e}"))
}

fn snippet(body: &str) -> String {
    let t: String = body.chars().take(200).collect();
    if t.trim().is_empty() {
        "(empty body)".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests;
