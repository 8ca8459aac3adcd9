//! Typed configuration, loaded once at start from `sync.toml` plus environment overrides.
//!
//! Sources, later ones winning: the TOML file (`--config PATH`, else `$PAYSYNC_CONFIG`, else
//! `./sync.toml`), then `PAYSYNC__SECTION__KEY` environment variables, and for accounts
//! `PAYSYNC__ACCOUNTS__<NAME>__KEY`. Every secret (`api_key`, `api_secret`, `access_token`,
//! `webhook_token`) may instead be read from a file named by `<key>_file` (relative paths are
//! looked up in `$CREDENTIALS_DIRECTORY`, which is where systemd's `LoadCredential=` puts them).
//!
//! Everything is validated here, before any work starts: a wrong key fails with the key, the file
//! and what was expected, and the binary exits with code 2. Secrets are held as
//! [`SecretString`], whose `Debug` prints `[REDACTED]`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// The default file name, looked up in the working directory.
pub const DEFAULT_FILE: &str = "sync.toml";
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
    /// HTTP listener: time a client has to send a request head (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// HTTP listener: time a webhook's body has to arrive once its head was read.
    pub body_timeout: Duration,
    /// HTTP listener: most connections open at once (lowered to fit the open-file limit).
    pub max_connections: usize,
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
    pub max_in_flight: usize,
    pub timeout: Duration,
    /// How long after a create whose answer was lost ERPNext may still commit it (its worker
    /// timeout: gunicorn's `timeout`, 120 s by default). Until then the create is not sent again.
    pub commit_horizon: Duration,
}

#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub name: String,
    pub api_url: Url,
    pub api_key: SecretString,
    pub access_token: SecretString,
    pub webhook_token: Option<SecretString>,
    pub company: String,
    pub mode_of_payment: String,
    pub paid_to: Option<String>,
    pub order_pattern: Option<Regex>,
    pub include_test: bool,
    pub schedule: Option<String>,
}

impl AccountSettings {
    /// The sales order named by an operation's reference: the whole reference, or the `order`
    /// group of `order_pattern`. `None` when the pattern does not match.
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

// ---- raw, as written in the file ---------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    store: RawStore,
    erp: RawErp,
    accounts: Vec<RawAccount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    #[serde(default = "default_tz")]
    timezone: String,
    #[serde(default = "default_schedule")]
    schedule: String,
    #[serde(default = "default_lookback")]
    lookback: String,
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    log_level: Option<String>,
    #[serde(default)]
    retry_budget: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    inbox_limit: Option<u64>,
    #[serde(default)]
    header_timeout: Option<String>,
    #[serde(default)]
    body_timeout: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    max_connections: Option<u64>,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            timezone: default_tz(),
            schedule: default_schedule(),
            lookback: default_lookback(),
            listen: default_listen(),
            log_level: None,
            retry_budget: None,
            inbox_limit: None,
            header_timeout: None,
            body_timeout: None,
            max_connections: None,
        }
    }
}

fn default_tz() -> String {
    "America/Argentina/Buenos_Aires".into()
}
fn default_schedule() -> String {
    "*/5 * * * *".into()
}
fn default_lookback() -> String {
    "2h".into()
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store")]
    url: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: default_store(),
        }
    }
}

fn default_store() -> String {
    "sqlite://paysync.db".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErp {
    kind: String,
    url: String,
    api_key: Option<String>,
    api_key_file: Option<String>,
    api_secret: Option<String>,
    api_secret_file: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    max_in_flight: Option<u64>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    commit_horizon: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    source: String,
    #[serde(default = "default_mobbex_url")]
    api_url: String,
    api_key: Option<String>,
    api_key_file: Option<String>,
    access_token: Option<String>,
    access_token_file: Option<String>,
    webhook_token: Option<String>,
    webhook_token_file: Option<String>,
    company: String,
    mode_of_payment: String,
    paid_to: Option<String>,
    order_pattern: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    include_test: Option<bool>,
    schedule: Option<String>,
}

fn default_mobbex_url() -> String {
    "https://api.mobbex.com".into()
}

/// Environment variables arrive as strings; accept them where the file would have a number or bool.
mod lenient {
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        N(u64),
        S(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrStr {
        B(bool),
        S(String),
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<NumOrStr>::deserialize(d)? {
            None => Ok(None),
            Some(NumOrStr::N(n)) => Ok(Some(n)),
            Some(NumOrStr::S(s)) => {
                s.trim().parse().map(Some).map_err(|_| {
                    D::Error::custom(format!("expected a positive integer, got {s:?}"))
                })
            }
        }
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<BoolOrStr>::deserialize(d)? {
            None => Ok(None),
            Some(BoolOrStr::B(b)) => Ok(Some(b)),
            Some(BoolOrStr::S(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(D::Error::custom(format!(
                    "expected true or false, got {s:?}"
                ))),
            },
        }
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
    let file = path.display().to_string();
    if !path.exists() {
        return Err(ConfigError::File {
            file,
            message: "not found (give --config PATH or set PAYSYNC_CONFIG)".into(),
        });
    }
    let file_err = |message: String| ConfigError::File {
        file: file.clone(),
        message,
    };

    // Section overrides go through config-rs's Environment source; account overrides are keyed by
    // account name, which config-rs cannot map onto an array, so they are applied by hand below.
    let section_env: HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !k.starts_with("PAYSYNC__ACCOUNTS__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let base = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("PAYSYNC")
                .prefix_separator("__")
                .separator("__")
                .source(Some(section_env)),
        );
    let first = base.clone().build().map_err(|e| file_err(e.to_string()))?;
    let mut value: serde_json::Value = first
        .try_deserialize()
        .map_err(|e| file_err(e.to_string()))?;
    apply_account_env(&mut value, env);

    let raw: RawSettings = serde_path_to_error::deserialize(&value).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Key {
            file: file.clone(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: e.inner().to_string(),
        }
    })?;
    validate(raw, path, env)
}

/// `PAYSYNC__ACCOUNTS__MAIN__API_KEY=...` sets `api_key` of the account named `main`
/// (names compared case-insensitively, `-` and `_` alike).
fn apply_account_env(value: &mut serde_json::Value, env: &HashMap<String, String>) {
    let Some(accounts) = value.get_mut("accounts").and_then(|a| a.as_array_mut()) else {
        return;
    };
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let sorted: BTreeMap<_, _> = env.iter().collect();
    for (k, v) in sorted {
        let Some(rest) = k.strip_prefix("PAYSYNC__ACCOUNTS__") else {
            continue;
        };
        let Some((name, key)) = rest.rsplit_once("__") else {
            continue;
        };
        for acc in accounts.iter_mut() {
            let matches = acc
                .get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| norm(n) == norm(name));
            if matches && let Some(obj) = acc.as_object_mut() {
                obj.insert(
                    key.to_ascii_lowercase(),
                    serde_json::Value::String(v.clone()),
                );
            }
        }
    }
}

fn validate(
    raw: RawSettings,
    path: &Path,
    env: &HashMap<String, String>,
) -> Result<Settings, ConfigError> {
    let file = path.display().to_string();
    let bad = |key: &str, message: String| ConfigError::Key {
        file: file.clone(),
        key: key.to_string(),
        message,
    };
    let creds_dir = env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let secret = |key: &str,
                  inline: Option<String>,
                  from_file: Option<String>,
                  required: bool|
     -> Result<Option<SecretString>, ConfigError> {
        match (inline, from_file) {
            (Some(_), Some(_)) => Err(bad(
                key,
                format!("give either {key} or {key}_file, not both"),
            )),
            (Some(v), None) => {
                if v.trim().is_empty() {
                    return Err(bad(key, "expected a non-empty secret".into()));
                }
                Ok(Some(SecretString::from(v)))
            }
            (None, Some(f)) => {
                let mut p = PathBuf::from(&f);
                if p.is_relative()
                    && let Some(dir) = &creds_dir
                {
                    p = dir.join(p);
                }
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    bad(
                        &format!("{key}_file"),
                        format!("cannot read secret file {}: {e}", p.display()),
                    )
                })?;
                let v = text.trim_end_matches(['\n', '\r']).to_string();
                if v.trim().is_empty() {
                    return Err(bad(
                        &format!("{key}_file"),
                        format!("secret file {} is empty", p.display()),
                    ));
                }
                Ok(Some(SecretString::from(v)))
            }
            (None, None) if required => Err(bad(
                key,
                format!("missing (set {key}, or {key}_file naming a file that holds it)"),
            )),
            (None, None) => Ok(None),
        }
    };

    // [daemon]
    let d = raw.daemon;
    let timezone = jiff::tz::TimeZone::get(&d.timezone).map_err(|e| {
        bad(
            "daemon.timezone",
            format!("expected an IANA time zone like America/Argentina/Buenos_Aires: {e}"),
        )
    })?;
    check_cron("daemon.schedule", &d.schedule).map_err(|m| bad("daemon.schedule", m))?;
    let lookback = parse_duration(&d.lookback).map_err(|m| {
        bad(
            "daemon.lookback",
            format!("expected a duration like \"2h\": {m}"),
        )
    })?;
    let retry_budget = match &d.retry_budget {
        None => Duration::from_secs(60),
        Some(t) => parse_duration(t).map_err(|m| {
            bad(
                "daemon.retry_budget",
                format!("expected a duration like \"60s\": {m}"),
            )
        })?,
    };
    let inbox_limit = d.inbox_limit.unwrap_or(10_000);
    if inbox_limit == 0 {
        return Err(bad(
            "daemon.inbox_limit",
            "expected a positive number".into(),
        ));
    }
    let listener = listener_limits(&d, bad)?;
    let listen: SocketAddr = d.listen.parse().map_err(|e| {
        bad(
            "daemon.listen",
            format!("expected ADDRESS:PORT like 127.0.0.1:8080: {e}"),
        )
    })?;

    // [store]
    let store_url = raw.store.url.trim().to_string();
    if !(store_url.starts_with("sqlite:")
        || store_url.starts_with("postgres://")
        || store_url.starts_with("postgresql://"))
    {
        return Err(bad(
            "store.url",
            format!("expected sqlite://FILE or postgres://..., got {store_url:?}"),
        ));
    }

    // [erp]
    let e = raw.erp;
    if e.kind != "erpnext" {
        return Err(bad(
            "erp.kind",
            format!(
                "expected \"erpnext\" (the only ERP supported), got {:?}",
                e.kind
            ),
        ));
    }
    let erp_url = parse_http_url(&e.url).map_err(|m| bad("erp.url", m))?;
    let max_in_flight = e.max_in_flight.unwrap_or(4);
    if !(1..=64).contains(&max_in_flight) {
        return Err(bad(
            "erp.max_in_flight",
            format!("expected 1 to 64, got {max_in_flight}"),
        ));
    }
    let timeout = match &e.timeout {
        None => Duration::from_secs(30),
        Some(t) => parse_duration(t).map_err(|m| {
            bad(
                "erp.timeout",
                format!("expected a duration like \"30s\": {m}"),
            )
        })?,
    };
    let commit_horizon = match &e.commit_horizon {
        None => Duration::from_secs(120),
        Some(t) => parse_duration(t).map_err(|m| {
            bad(
                "erp.commit_horizon",
                format!("expected a duration like \"120s\": {m}"),
            )
        })?,
    };
    if commit_horizon > Duration::from_secs(3600) {
        return Err(bad(
            "erp.commit_horizon",
            format!("expected at most 1h, got {}s", commit_horizon.as_secs()),
        ));
    }
    let erp = ErpSettings {
        url: erp_url,
        api_key: secret("erp.api_key", e.api_key, e.api_key_file, true)?.expect("required"),
        api_secret: secret("erp.api_secret", e.api_secret, e.api_secret_file, true)?
            .expect("required"),
        max_in_flight: max_in_flight as usize,
        timeout,
        commit_horizon,
    };

    // [[accounts]]
    if raw.accounts.is_empty() {
        return Err(bad(
            "accounts",
            "expected at least one [[accounts]] table".into(),
        ));
    }
    let mut accounts = Vec::new();
    for (i, a) in raw.accounts.into_iter().enumerate() {
        let k = |key: &str| format!("accounts[{i}].{key}");
        if a.name.trim().is_empty()
            || !a
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                &k("name"),
                format!(
                    "expected a name of letters, digits, - and _, got {:?}",
                    a.name
                ),
            ));
        }
        if accounts.iter().any(|x: &AccountSettings| x.name == a.name) {
            return Err(bad(
                &k("name"),
                format!("duplicate account name {:?}", a.name),
            ));
        }
        if a.source != "mobbex" {
            return Err(bad(
                &k("source"),
                format!(
                    "expected \"mobbex\" (the only source supported), got {:?}",
                    a.source
                ),
            ));
        }
        let api_url = parse_http_url(&a.api_url).map_err(|m| bad(&k("api_url"), m))?;
        for (key, v) in [
            ("company", &a.company),
            ("mode_of_payment", &a.mode_of_payment),
        ] {
            if v.trim().is_empty() {
                return Err(bad(&k(key), "expected a non-empty name".into()));
            }
        }
        let order_pattern = match &a.order_pattern {
            None => None,
            Some(p) => {
                let re = Regex::new(p)
                    .map_err(|e| bad(&k("order_pattern"), format!("invalid regex: {e}")))?;
                if !re.capture_names().any(|n| n == Some("order")) {
                    return Err(bad(
                        &k("order_pattern"),
                        "expected a named group (?P<order>...) that captures the order name".into(),
                    ));
                }
                Some(re)
            }
        };
        if let Some(s) = &a.schedule {
            check_cron(&k("schedule"), s).map_err(|m| bad(&k("schedule"), m))?;
        }
        let api_key = secret(&k("api_key"), a.api_key, a.api_key_file, true)?.expect("required");
        let access_token = secret(
            &k("access_token"),
            a.access_token,
            a.access_token_file,
            true,
        )?
        .expect("required");
        // One Mobbex entity configured twice (a copy-paste, or two names for one entity) would
        // book every payment twice: the credentials name the entity.
        if let Some(twin) = accounts.iter().find(|x| {
            x.api_url == api_url
                && x.api_key.expose_secret() == api_key.expose_secret()
                && x.access_token.expose_secret() == access_token.expose_secret()
        }) {
            return Err(bad(
                &k("access_token"),
                format!(
                    "accounts {:?} and {:?} have the same Mobbex credentials: they are one entity; keep one of them",
                    twin.name, a.name
                ),
            ));
        }
        accounts.push(AccountSettings {
            api_key,
            access_token,
            webhook_token: secret(
                &k("webhook_token"),
                a.webhook_token,
                a.webhook_token_file,
                false,
            )?,
            name: a.name,
            api_url,
            company: a.company,
            mode_of_payment: a.mode_of_payment,
            paid_to: a.paid_to.filter(|p| !p.trim().is_empty()),
            order_pattern,
            include_test: a.include_test.unwrap_or(false),
            schedule: a.schedule,
        });
    }

    Ok(Settings {
        file: path.to_path_buf(),
        daemon: DaemonSettings {
            timezone_name: d.timezone,
            timezone,
            schedule: d.schedule,
            lookback,
            listen,
            log_level: d.log_level,
            retry_budget,
            inbox_limit: inbox_limit as i64,
            header_timeout: listener.header_timeout,
            body_timeout: listener.body_timeout,
            max_connections: listener.max_connections,
        },
        store: StoreSettings { url: store_url },
        erp,
        accounts,
    })
}

/// The HTTP listener's limits in `[daemon]`, validated.
struct ListenerLimits {
    header_timeout: Duration,
    body_timeout: Duration,
    max_connections: usize,
}

fn listener_limits(
    d: &RawDaemon,
    bad: impl Fn(&str, String) -> ConfigError,
) -> Result<ListenerLimits, ConfigError> {
    let bounded = |key: &str, given: &Option<String>, default: u64| {
        let Some(text) = given else {
            return Ok(Duration::from_secs(default));
        };
        let expected = "expected a duration from 1s to 5m like \"10s\"";
        let d = parse_duration(text).map_err(|m| bad(key, format!("{expected}: {m}")))?;
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&d) {
            return Err(bad(key, format!("{expected}, got {text:?}")));
        }
        Ok(d)
    };
    let max_connections = d.max_connections.unwrap_or(1024);
    if !(16..=1_000_000).contains(&max_connections) {
        return Err(bad(
            "daemon.max_connections",
            format!("expected 16 to 1000000, got {max_connections}"),
        ));
    }
    Ok(ListenerLimits {
        header_timeout: bounded("daemon.header_timeout", &d.header_timeout, 10)?,
        body_timeout: bounded("daemon.body_timeout", &d.body_timeout, 30)?,
        max_connections: max_connections as usize,
    })
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let u = Url::parse(s.trim()).map_err(|e| format!("expected an http(s) URL, got {s:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(format!("expected an http(s) URL, got {s:?}"));
    }
    Ok(u)
}

/// Parse a friendly duration ("2h", "90s", "1h 30m").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s.trim().parse().map_err(|e| format!("{e}"))?;
    if d.is_negative() {
        return Err("must not be negative".into());
    }
    Duration::try_from(d).map_err(|e| e.to_string())
}

/// Validate a cron expression: standard 5 fields, or 6 with seconds.
pub fn check_cron(_key: &str, expr: &str) -> Result<(), String> {
    crate::schedule::parse(expr).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
timezone = "America/Argentina/Buenos_Aires"
schedule = "*/5 * * * *"
lookback = "2h"
listen = "127.0.0.1:8080"
[store]
url = "sqlite://paysync.db"
[erp]
kind = "erpnext"
url = "https://erp.example.com"
api_key = "k"
api_secret = "s"
max_in_flight = 4
[[accounts]]
name = "main"
source = "mobbex"
api_url = "https://api.mobbex.com"
api_key = "mk"
access_token = "mt"
webhook_token = "wt"
company = "Mi Empresa SA"
mode_of_payment = "Mobbex"
paid_to = "Mobbex - MESA"
order_pattern = '^(?P<order>SAL-ORD-\d{4}-\d+)'
include_test = false
"#;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let f = write(text);
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with_env(f.path(), &env)
    }

    #[test]
    fn the_documented_example_loads() {
        let s = load_text(GOOD, &[]).unwrap();
        assert_eq!(s.erp.max_in_flight, 4);
        assert_eq!(s.daemon.lookback, Duration::from_secs(7200));
        let a = &s.accounts[0];
        assert_eq!(
            a.order_name("SAL-ORD-2026-00042-retry2"),
            Some("SAL-ORD-2026-00042")
        );
        assert_eq!(a.order_name("shop_id:42"), None);
        assert_eq!(a.api_key.expose_secret(), "mk");
    }

    #[test]
    fn env_overrides_sections_and_accounts() {
        let s = load_text(
            GOOD,
            &[
                ("PAYSYNC__ERP__MAX_IN_FLIGHT", "9"),
                ("PAYSYNC__ERP__URL", "http://127.0.0.1:9/"),
                ("PAYSYNC__ACCOUNTS__MAIN__ACCESS_TOKEN", "from-env"),
                ("PAYSYNC__ACCOUNTS__MAIN__INCLUDE_TEST", "true"),
            ],
        )
        .unwrap();
        assert_eq!(s.erp.max_in_flight, 9);
        assert_eq!(s.erp.url.as_str(), "http://127.0.0.1:9/");
        assert_eq!(s.accounts[0].access_token.expose_secret(), "from-env");
        assert!(s.accounts[0].include_test);
    }

    #[test]
    fn secrets_from_files_and_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("erp-secret"), "file-secret\n").unwrap();
        let text = GOOD.replace("api_secret = \"s\"", "api_secret_file = \"erp-secret\"");
        let s = load_text(
            &text,
            &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())],
        )
        .unwrap();
        assert_eq!(s.erp.api_secret.expose_secret(), "file-secret");
    }

    fn key_error(text: &str) -> (String, String) {
        match load_text(text, &[]) {
            Err(ConfigError::Key { key, message, .. }) => (key, message),
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn bad_keys_are_named() {
        let cases = [
            (
                GOOD.replace("url = \"https://erp.example.com\"\n", ""),
                "erp",
            ),
            (
                GOOD.replace("\"*/5 * * * *\"", "\"every five\""),
                "daemon.schedule",
            ),
            (
                GOOD.replace("America/Argentina/Buenos_Aires", "Mars/Olympus"),
                "daemon.timezone",
            ),
            (GOOD.replace("\"2h\"", "\"soon\""), "daemon.lookback"),
            (
                GOOD.replace("https://erp.example.com", "not a url"),
                "erp.url",
            ),
            (
                GOOD.replace("max_in_flight = 4", "max_in_flight = 0"),
                "erp.max_in_flight",
            ),
            (
                GOOD.replace("max_in_flight = 4", "max_in_flight = \"many\""),
                "erp.max_in_flight",
            ),
            (
                GOOD.replace("kind = \"erpnext\"", "kind = \"odoo\""),
                "erp.kind",
            ),
            (GOOD.replace("api_secret = \"s\"\n", ""), "erp.api_secret"),
            (GOOD.replace("(?P<order>", "("), "accounts[0].order_pattern"),
            (
                GOOD.replace("sqlite://paysync.db", "mysql://x"),
                "store.url",
            ),
            (
                GOOD.replace("include_test = false", "include_tset = false"),
                "accounts[0]",
            ),
            (GOOD.replace("127.0.0.1:8080", "localhost"), "daemon.listen"),
        ];
        for (text, want) in cases {
            let (key, message) = key_error(&text);
            assert!(key.starts_with(want), "want {want}, got {key}: {message}");
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn listener_limits_have_defaults_and_ranges() {
        let s = load_text(GOOD, &[]).unwrap();
        assert_eq!(s.daemon.header_timeout, Duration::from_secs(10));
        assert_eq!(s.daemon.body_timeout, Duration::from_secs(30));
        assert_eq!(s.daemon.max_connections, 1024);
        let with = |lines: &str| GOOD.replace("[daemon]\n", &format!("[daemon]\n{lines}\n"));
        let s = load_text(
            &with("header_timeout = \"2s\"\nbody_timeout = \"1m\"\nmax_connections = 100"),
            &[("PAYSYNC__DAEMON__MAX_CONNECTIONS", "2000")],
        )
        .unwrap();
        assert_eq!(s.daemon.header_timeout, Duration::from_secs(2));
        assert_eq!(s.daemon.body_timeout, Duration::from_secs(60));
        assert_eq!(s.daemon.max_connections, 2000);
        for (line, want) in [
            ("header_timeout = \"0s\"", "daemon.header_timeout"),
            ("header_timeout = \"500ms\"", "daemon.header_timeout"),
            ("header_timeout = \"10m\"", "daemon.header_timeout"),
            ("body_timeout = \"soon\"", "daemon.body_timeout"),
            ("max_connections = 8", "daemon.max_connections"),
            ("max_connections = 2000000", "daemon.max_connections"),
            ("max_connections = \"many\"", "daemon.max_connections"),
        ] {
            let (key, message) = key_error(&with(line));
            assert_eq!(key, want, "{line}: {message}");
        }
    }

    #[test]
    fn one_mobbex_entity_configured_twice_is_refused_naming_both() {
        let twin = "\n[[accounts]]\nname = \"copy\"\nsource = \"mobbex\"\napi_key = \"mk\"\naccess_token = \"mt\"\ncompany = \"Mi Empresa SA\"\nmode_of_payment = \"Mobbex\"\n";
        let (key, message) = key_error(&format!("{GOOD}{twin}"));
        assert_eq!(key, "accounts[1].access_token");
        assert!(
            message.contains("\"main\"") && message.contains("\"copy\""),
            "{message}"
        );
        assert!(
            !message.contains("mt"),
            "no secret in the message: {message}"
        );
        // Another entity (other token) is fine.
        let other = twin.replace("access_token = \"mt\"", "access_token = \"other\"");
        assert!(load_text(&format!("{GOOD}{other}"), &[]).is_ok());
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = load_with_env(Path::new("/nonexistent/sync.toml"), &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/sync.toml"));
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = load_text(GOOD, &[]).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("\"mk\"") && !dbg.contains("\"wt\""), "{dbg}");
    }
}
