//! Typed configuration, loaded once at start from `sync.toml` plus environment overrides.
//!
//! Sources, later ones winning: the TOML file (`--config PATH`, else `$PAYSYNC_CONFIG`, else
//! `./sync.toml`), then `PAYSYNC__SECTION__KEY` environment variables, and for accounts
//! `PAYSYNC__ACCOUNTS__<NAME>__KEY`. Every secret (`api_key`, `api_secret`, `access_token`,
//! `webhook_token`, and Mercado Pago's `client_secret`, `refresh_token`, `webhook_secret`) may
//! instead be read from a file named by `<key>_file` (relative paths are
//! looked up in `$CREDENTIALS_DIRECTORY`, which is where systemd's `LoadCredential=` puts them).
//!
//! Everything is validated here, before any work starts: a wrong key fails with the key, the file
//! and what was expected (`key: problem (got VALUE)`; every number and duration has a range), and
//! the binary exits with code 2. Secrets are held as [`SecretString`], whose `Debug` prints
//! `[REDACTED]`, and no message shows one: not a syntax error (no line of the file is ever
//! shown), not a type error on a secret key, not a URL's userinfo.
//!
//! - `raw.rs`: the file's shape (serde), the key lists.
//! - `read.rs`: the file and the environment into that shape; syntax and type errors, redacted.
//! - `validate.rs`: every key checked, with its range, into [`Settings`]; `validate/account.rs`
//!   an `[[accounts]]` table (its source's credentials, how its payments find their order, fees).
//! - `secrets.rs`: inline and `*_file` secrets, bounded reads, the file-permission warning.

mod raw;
mod read;
mod secrets;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use secrecy::SecretString;
use url::Url;

pub use secrets::exposure_warning;
pub use validate::{check_cron, parse_duration};

/// The default file name, looked up in the working directory.
pub const DEFAULT_FILE: &str = "sync.toml";
/// `[daemon] lease` when not set.
pub const DEFAULT_LEASE: std::time::Duration = validate::LEASE.0;
const ENV_PREFIX: &str = "PAYSYNC__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {file}: {message}")]
    File { file: String, message: String },
    #[error("configuration {file}: key `{key}`: {message}")]
    Key {
        file: String,
        key: String,
        message: String,
    },
    #[error("configuration {file}: environment variable {var}: {message}")]
    Env {
        file: String,
        var: String,
        message: String,
    },
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it was read from (for messages).
    pub file: PathBuf,
    pub daemon: DaemonSettings,
    pub store: StoreSettings,
    pub erp: ErpSettings,
    pub accounts: Vec<AccountSettings>,
    /// The secrets written in the file itself (not `*_file`), by key: `check` warns when others
    /// may read the file.
    pub secrets_in_file: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub timezone_name: String,
    pub timezone: jiff::tz::TimeZone,
    /// The cron expression as written (5 fields, or 6 with seconds).
    pub schedule: String,
    pub lookback: Duration,
    pub listen: SocketAddr,
    pub log_level: Option<String>,
    /// Total time one API call may spend waiting between retries before the operation is left
    /// for the next run.
    pub retry_budget: Duration,
    /// Webhooks are refused with 429 past this many queued triggers per account.
    pub inbox_limit: i64,
    /// `paysync sync --since` may go at most this many days back from today.
    pub max_sync_days: u32,
    /// HTTP listener: time a client has to send a request head (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// HTTP listener: time a webhook's body has to arrive once its head was read.
    pub body_timeout: Duration,
    /// HTTP listener: most connections open at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// How long a dead, paused or cut-off instance's poll, inbox and order leases last before
    /// another instance takes its work over; live holders renew well before.
    pub lease: Duration,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct ErpSettings {
    pub url: Url,
    pub api_key: SecretString,
    pub api_secret: SecretString,
    pub max_in_flight: InFlight,
    pub timeout: Duration,
    /// How long after a create whose answer was lost ERPNext may still commit it (its worker
    /// timeout: gunicorn's `timeout`, 120 s by default). Until then the create is not sent again.
    pub commit_horizon: Duration,
}

#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub name: String,
    /// The gateway (`source = "mobbex"` or `"mercadopago"`).
    pub source: crate::source::SourceKind,
    pub api_url: Url,
    /// How paysync proves who it is to the gateway; its shape follows `source`.
    pub credentials: SourceCredentials,
    /// The token a webhook URL must carry (`?token=`); for Mercado Pago a second check besides
    /// the signature, and the only one MercadoLibre's unsigned notifications can have.
    pub webhook_token: Option<SecretString>,
    pub company: String,
    pub mode_of_payment: String,
    pub paid_to: Option<String>,
    pub order_pattern: Option<Regex>,
    /// Which of the payment's fields names its sales order.
    pub order_source: OrderSource,
    /// The Sales Order field that holds that value (`name`, `po_no`, a custom field).
    pub order_field: String,
    pub include_test: bool,
    /// Reverse refunds and chargebacks of payments paysync booked with a "Pay" entry each
    /// (`reverse_refunds`); off: a warning names the entry to reverse by hand.
    pub reverse_refunds: bool,
    pub schedule: Option<String>,
    /// Naming series the account's entries are spread over (empty: ERPNext's default). Frappe
    /// names every Payment Entry under a lock on its series' counter held until commit, so one
    /// series takes one write at a time; each series has its own counter and lock.
    pub naming_series: Vec<String>,
    /// Book the gateway's fees as deductions (`fees_account`); `None`: the gross amount is booked.
    pub fees: Option<FeeDeduction>,
}

/// An account's credentials, per gateway.
#[derive(Debug, Clone)]
pub enum SourceCredentials {
    /// Headers `x-api-key` and `x-access-token`.
    Mobbex {
        api_key: SecretString,
        access_token: SecretString,
    },
    MercadoPago(Box<MercadoPagoCredentials>),
}

#[derive(Debug, Clone)]
pub struct MercadoPagoCredentials {
    pub token: MercadoPagoToken,
    /// The application's signature secret: webhooks whose `x-signature` does not verify are
    /// refused. `None`: Mercado Pago webhooks are refused (401), MercadoLibre's still taken.
    pub webhook_secret: Option<SecretString>,
    /// Where MercadoLibre orders are read (`/orders/{id}`).
    pub meli_api_url: Url,
}

#[derive(Debug, Clone)]
pub enum MercadoPagoToken {
    /// The seller's own access token, sent as it is.
    Static(SecretString),
    /// An application's OAuth keys: access tokens are obtained and refreshed, and every refresh
    /// token the server rotates to is kept in the ledger (`refresh_token` here is the first one,
    /// or a new one after the seller authorized again).
    OAuth(OAuthKeys),
}

#[derive(Debug, Clone)]
pub struct OAuthKeys {
    /// The application id (also the `application_id` of MercadoLibre notifications).
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    pub token_url: Url,
}

/// `order_source`: which of a payment's fields names its sales order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSource {
    /// The reference the shop gave the gateway (Mobbex `reference`, Mercado Pago
    /// `external_reference`).
    ExternalReference,
    /// The marketplace order id (Mercado Pago `order.id` of a `mercadolibre` order).
    OrderId,
}

/// `fees_account` and `fees_cost_center`: where the gateway's fees are booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeDeduction {
    pub account: String,
    pub cost_center: String,
}

/// `[erp] max_in_flight`: how many creates go to ERPNext at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// Exactly this many at most.
    Fixed(usize),
    /// A limit that follows what the server sustains (`pipeline::limit`), from 1 to
    /// [`AUTO_MAX_IN_FLIGHT`].
    Auto,
}

/// The most creates at once an `"auto"` limit grows to.
pub const AUTO_MAX_IN_FLIGHT: usize = 32;

impl AccountSettings {
    /// A Mobbex account's `api_key` and `access_token`.
    pub fn mobbex_keys(&self) -> Option<(&SecretString, &SecretString)> {
        match &self.credentials {
            SourceCredentials::Mobbex {
                api_key,
                access_token,
            } => Some((api_key, access_token)),
            SourceCredentials::MercadoPago(_) => None,
        }
    }

    /// The value that finds an operation's sales order (in [`Self::order_field`]): the field
    /// `order_source` names, then [`Self::order_name`] on it. `None`: the payment names none.
    pub fn order_key<'o>(&self, op: &'o crate::domain::Operation) -> Option<&'o str> {
        match self.order_source {
            OrderSource::ExternalReference => self.order_name(&op.reference),
            OrderSource::OrderId => op
                .marketplace_order
                .as_deref()
                .and_then(|o| self.order_name(o)),
        }
    }

    /// The sales order named by a reference: the whole reference, or the `order` group of
    /// `order_pattern`. `None` when the pattern does not match.
    pub fn order_name<'r>(&self, reference: &'r str) -> Option<&'r str> {
        match &self.order_pattern {
            None => {
                let r = reference.trim();
                (!r.is_empty()).then_some(r)
            }
            Some(re) => re
                .captures(reference)
                .and_then(|c| c.name("order"))
                .map(|m| m.as_str()),
        }
    }
}

impl Settings {
    pub fn account(&self, name: &str) -> Option<&AccountSettings> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

// ---- loading -------------------------------------------------------------------------------

/// Which file to read: the explicit path, else `$PAYSYNC_CONFIG`, else `./sync.toml`.
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("PAYSYNC_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_FILE),
    }
}

/// Load and validate the configuration from `path` and the process environment.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load_with_env(path, &env)
}

/// [`load`] with an explicit environment (tests use this instead of mutating the process env).
pub fn load_with_env(path: &Path, env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
    if !path.exists() {
        return Err(ConfigError::File {
            file: path.display().to_string(),
            message: "not found (give --config PATH or set PAYSYNC_CONFIG)".into(),
        });
    }
    let read = read::read(path, env)?;
    let creds_dir = env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let mut settings = validate::validate(read.raw, path, creds_dir.as_deref())
        .map_err(|e| read.origins.explain(e))?;
    settings.secrets_in_file = read.secrets_in_file;
    Ok(settings)
}

#[cfg(test)]
mod tests;
