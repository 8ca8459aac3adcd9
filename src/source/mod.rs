//! Payment sources: where operations come from. One trait, one module per gateway.
//!
//! The pipeline only sees [`PaymentSource`] and domain [`Operation`]s; Mobbex's wire format stays in
//! `mobbex.rs`. A second gateway (MercadoLibre, say) is a second implementation of the trait.

pub mod mercadopago;
pub mod mobbex;
pub mod slices;

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::Operation;

/// Which gateway an account's payments come from (`source = "..."` in `sync.toml`; also the
/// first segment of its webhook URL, `/webhooks/{source}/{account}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Mobbex,
    /// Mercado Pago payments, MercadoLibre's included (every MercadoLibre sale is paid through
    /// Mercado Pago).
    MercadoPago,
}

impl SourceKind {
    pub const ALL: [SourceKind; 2] = [SourceKind::Mobbex, SourceKind::MercadoPago];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Mobbex => "mobbex",
            SourceKind::MercadoPago => "mercadopago",
        }
    }

    /// The gateway's name as its errors say it (`SourceError`'s `api`).
    pub fn api_name(self) -> &'static str {
        match self {
            SourceKind::Mobbex => mobbex::API,
            SourceKind::MercadoPago => "Mercado Pago",
        }
    }

    /// The API an account of this source talks to when `api_url` is not given.
    pub fn default_api_url(self) -> &'static str {
        match self {
            SourceKind::Mobbex => "https://api.mobbex.com",
            SourceKind::MercadoPago => "https://api.mercadopago.com",
        }
    }

    pub fn parse(s: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Read a webhook body of this source (each source's format lives with its adapter).
    pub fn parse_webhook(
        self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Trigger, WebhookError> {
        match self {
            SourceKind::Mobbex => mobbex::webhook::parse(content_type, body),
            SourceKind::MercadoPago => Err(WebhookError::Unparseable(
                "Mercado Pago webhooks are not wired yet".into(),
            )),
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a webhook asks paysync to do, whatever its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Re-read this operation and decide. `reference` is the body's claim, used only as a hint.
    Operation {
        uid: String,
        kind: String,
        reference: Option<String>,
    },
    /// Recorded and ignored: an expired checkout, or a child operation (its parent carries the money).
    Ignored { uid: String, reason: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("unparseable body: {0}")]
    Unparseable(String),
    #[error("no operation id in data.payment.id")]
    NoOperationId,
}

/// Which timestamp a window filters on: a manual sync examines operations *created* in its dates;
/// a poll examines operations *updated* since the last poll (so late payments are caught).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowField {
    Created,
    Updated,
}

/// A closed time window `[from, to]` (inclusive both ends, as Mobbex filters are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub field: WindowField,
    pub from: Timestamp,
    pub to: Timestamp,
}

/// One item of a listing: a well-formed operation, or a document we could not read.
#[derive(Debug, Clone)]
pub enum Fetched {
    Op(Operation),
    /// A malformed document: recorded as an `error` decision (when it has an id) and skipped,
    /// so one bad document never stops the others.
    Bad {
        uid: Option<String>,
        reason: String,
    },
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Fetched>,
    /// No page after this one.
    pub is_last: bool,
    /// How many the whole window holds, where the source says (Mercado Pago's
    /// `paging.total`): tells early that a window is past the source's page ceiling.
    pub total: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{api}: cannot connect or no answer: {message}")]
    Transport { api: &'static str, message: String },
    #[error("{api}: credentials refused (HTTP {status}): {message}")]
    Unauthorized {
        api: &'static str,
        status: u16,
        message: String,
    },
    #[error("{api}: rate limited (HTTP 429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        api: &'static str,
        retry_after: Option<Duration>,
    },
    #[error("{api}: HTTP {status}: {message}")]
    Http {
        api: &'static str,
        status: u16,
        message: String,
    },
    #[error("{api}: error {code}: {message}")]
    Api {
        api: &'static str,
        code: String,
        message: String,
    },
    #[error("{api}: operation {uid} not found")]
    NotFound { api: &'static str, uid: String },
    #[error("{api}: malformed answer: {message}")]
    Malformed { api: &'static str, message: String },
}

impl SourceError {
    /// Worth retrying soon: network trouble, 429, 408 and every 5xx whatever its body (see
    /// `mobbex::classify`). Everything else needs a person or a later run.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Transport { .. } | SourceError::RateLimited { .. } => true,
            SourceError::Http { status, .. } => matches!(status, 500..=599 | 408),
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The `code` of [`SourceError::Api`] a source answers for a page past what one window may be
/// read in (a search's offset ceiling): the listing reads the window again in shorter slices.
pub const PAST_PAGE_CEILING: &str = "offset_ceiling";

/// A payment gateway, read-only.
#[async_trait]
pub trait PaymentSource: Send + Sync {
    /// Page `page` (from 0) of the operations in `window`.
    async fn list_page(&self, window: &Window, page: u32) -> Result<Page, SourceError>;
    /// The current state of one operation.
    async fn get_operation(&self, uid: &str) -> Result<Operation, SourceError>;
    /// Cheap call proving the credentials work (used by `paysync check`).
    async fn check(&self) -> Result<(), SourceError>;
    /// The most pages one window can be read in (a search's offset ceiling); `None`: no limit.
    /// A window that needs more is read again in shorter slices (`slices.rs`).
    fn page_ceiling(&self) -> Option<u32> {
        None
    }
    /// A trigger that names several operations rather than one (a marketplace order's
    /// notification): their uids, each then queued as a trigger of its own. `None`: `uid` is one
    /// operation, read with [`PaymentSource::get_operation`].
    async fn expand_trigger(&self, _uid: &str) -> Option<Result<Vec<String>, SourceError>> {
        None
    }
    /// The gateway's id of the merchant behind the credentials, once known (Mercado Pago: the
    /// seller's user id, read by [`PaymentSource::check`]); webhooks naming another are refused.
    fn merchant_id(&self) -> Option<String> {
        None
    }
    /// Why the source cannot work any more without a person (credentials revoked), for
    /// `/healthz` and `status`; `None` while it can.
    fn stopped(&self) -> Option<String> {
        None
    }
}
