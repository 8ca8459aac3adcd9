//! The configuration as written in `sync.toml` (plus environment overrides), before validation.
//!
//! Numbers go through [`lenient`]: environment variables arrive as strings, and a mistyped number
//! (`1e20`, `-1`, `"many"`) must fail with the key and the value, not with serde's "data did not
//! match any variant".

use serde::Deserialize;

/// The keys whose values are secrets: never shown in a message, wherever they come from.
pub(super) const SECRET_KEYS: &[&str] = &[
    "api_key",
    "api_secret",
    "access_token",
    "webhook_token",
    "client_secret",
    "refresh_token",
    "webhook_secret",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub store: RawStore,
    pub erp: RawErp,
    pub accounts: Vec<RawAccount>,
}

/// Every key of `[daemon]` (checked against the struct by a test).
pub(super) const DAEMON_KEYS: &[&str] = &[
    "timezone",
    "schedule",
    "lookback",
    "listen",
    "log_level",
    "retry_budget",
    "inbox_limit",
    "max_sync_days",
    "header_timeout",
    "body_timeout",
    "max_connections",
    "lease",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    #[serde(default = "default_tz")]
    pub timezone: String,
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub lookback: Option<String>,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub retry_budget: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub inbox_limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub max_sync_days: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub header_timeout: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub body_timeout: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub max_connections: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub lease: Option<String>,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            timezone: default_tz(),
            schedule: default_schedule(),
            lookback: None,
            listen: default_listen(),
            log_level: None,
            retry_budget: None,
            inbox_limit: None,
            max_sync_days: None,
            header_timeout: None,
            body_timeout: None,
            max_connections: None,
            lease: None,
        }
    }
}

fn default_tz() -> String {
    "America/Argentina/Buenos_Aires".into()
}
fn default_schedule() -> String {
    "*/5 * * * *".into()
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

pub(super) const STORE_KEYS: &[&str] = &["url", "url_file"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    /// `None` (with no `url_file`): [`default_store`].
    pub url: Option<String>,
    /// A file holding the URL (a PostgreSQL password is a secret like any other).
    pub url_file: Option<String>,
}

pub(super) fn default_store() -> String {
    "sqlite://paysync.db".into()
}

pub(super) const ERP_KEYS: &[&str] = &[
    "kind",
    "url",
    "api_key",
    "api_key_file",
    "api_secret",
    "api_secret_file",
    "max_in_flight",
    "timeout",
    "commit_horizon",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawErp {
    pub kind: String,
    pub url: String,
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
    pub api_secret: Option<String>,
    pub api_secret_file: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_in_flight")]
    pub max_in_flight: Option<RawInFlight>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub timeout: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub commit_horizon: Option<String>,
}

/// Every key of an `[[accounts]]` table: what `PAYSYNC__ACCOUNTS__<NAME>__<KEY>` may set.
pub(super) const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "source",
    "api_url",
    "api_key",
    "api_key_file",
    "access_token",
    "access_token_file",
    "webhook_token",
    "webhook_token_file",
    "client_id",
    "client_secret",
    "client_secret_file",
    "refresh_token",
    "refresh_token_file",
    "token_url",
    "webhook_secret",
    "webhook_secret_file",
    "meli_api_url",
    "company",
    "mode_of_payment",
    "paid_to",
    "order_pattern",
    "order_source",
    "order_field",
    "include_test",
    "reverse_refunds",
    "schedule",
    "naming_series",
    "fees_account",
    "fees_cost_center",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub name: String,
    pub source: String,
    /// `None`: the source's own API (`SourceKind::default_api_url`).
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
    pub access_token: Option<String>,
    pub access_token_file: Option<String>,
    pub webhook_token: Option<String>,
    pub webhook_token_file: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub refresh_token: Option<String>,
    pub refresh_token_file: Option<String>,
    pub token_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub webhook_secret_file: Option<String>,
    pub meli_api_url: Option<String>,
    pub company: String,
    pub mode_of_payment: String,
    pub paid_to: Option<String>,
    pub order_pattern: Option<String>,
    pub order_source: Option<String>,
    pub order_field: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub include_test: Option<bool>,
    pub reverse_refunds: Option<bool>,
    pub schedule: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_list")]
    pub naming_series: Option<Vec<String>>,
    pub fees_account: Option<String>,
    pub fees_cost_center: Option<String>,
}

/// `[erp] max_in_flight` as written: a number (range-checked later) or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawInFlight {
    Number(i64),
    Auto,
}

/// Environment variables arrive as strings; accept them where the file would have a number or
/// bool, and say what was wrong with the value otherwise.
mod lenient {
    use serde::{Deserialize, Deserializer, de::Error};
    use serde_json::Value;

    /// A whole number (range-checked later, where the key's bounds are known).
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        let got = |v: &Value| D::Error::custom(format!("expected a whole number (got {v})"));
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| got(&Value::Number(n))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| got(&Value::String(s))),
            Some(other) => Err(got(&other)),
        }
    }

    /// A whole number, or the word `auto` (any case).
    pub fn opt_in_flight<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<super::RawInFlight>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        let got =
            |v: &Value| D::Error::custom(format!("expected a whole number or \"auto\" (got {v})"));
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(|n| Some(super::RawInFlight::Number(n)))
                .ok_or_else(|| got(&Value::Number(n))),
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("auto") => {
                Ok(Some(super::RawInFlight::Auto))
            }
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(|n| Some(super::RawInFlight::Number(n)))
                .map_err(|_| got(&Value::String(s))),
            Some(other) => Err(got(&other)),
        }
    }

    /// A list of strings; a single string is a comma-separated list (what an environment
    /// variable can say).
    pub fn opt_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        let got = |v: &Value| D::Error::custom(format!("expected a list of strings (got {v})"));
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                Ok(Some(s.split(',').map(|p| p.trim().to_string()).collect()))
            }
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(got(&other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(got(&other)),
        }
    }

    /// A duration, as text ("30s"): a bare number has no unit, so it is refused naming the value.
    pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(D::Error::custom(format!(
                "expected a duration in quotes with a unit, like \"30s\", \"2h\" or \"3d\" (got {other})"
            ))),
        }
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(D::Error::custom(format!(
                    "expected true or false (got {s:?})"
                ))),
            },
            Some(other) => Err(D::Error::custom(format!(
                "expected true or false (got {other})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of serde's "unknown field `x`, expected one of `a`, `b`" for a struct.
    fn serde_keys<T: for<'de> Deserialize<'de>>() -> Vec<String> {
        let err = match serde_json::from_str::<T>(r#"{"zz_not_a_key": 1}"#) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an unknown key must be refused"),
        };
        let list = err
            .split_once("expected one of ")
            .or_else(|| err.split_once("expected "))
            .map(|(_, list)| list)
            .unwrap_or_else(|| panic!("{err}"));
        // serde lists "`a`, `b`, or `c`", or "`a` or `b`" for two keys.
        list.split(", ")
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim_matches(|c: char| c == '`' || c.is_whitespace()))
            .map(|k| k.split('`').next().unwrap().to_string())
            .collect()
    }

    /// The key lists (used to name environment variables and keys in messages) are the keys
    /// serde accepts: a key added to a struct must be added to its list.
    #[test]
    fn the_key_lists_are_the_structs_keys() {
        assert_eq!(serde_keys::<RawDaemon>(), DAEMON_KEYS);
        assert_eq!(serde_keys::<RawStore>(), STORE_KEYS);
        assert_eq!(serde_keys::<RawErp>(), ERP_KEYS);
        assert_eq!(serde_keys::<RawAccount>(), ACCOUNT_KEYS);
    }
}
